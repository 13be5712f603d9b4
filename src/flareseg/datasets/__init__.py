"""Datasets in the nnU-Net v2 layout, with per-case label sets and unlabelled cases."""

from flareseg.datasets.layout import Case, DatasetSpec, list_cases, load_spec

__all__ = ["Case", "DatasetSpec", "list_cases", "load_spec"]
