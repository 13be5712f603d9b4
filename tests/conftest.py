"""Shared fixtures: the real CT data folder and seeded temporary folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    return Path(os.environ.get("FLARESEG_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real CT scans (``../shared/data`` beside the repository).

    Missing data fails the run on CI (where it must be present) and skips locally.
    """
    root = _data_root()
    if not (root / "ts_example" / "example_ct.nii.gz").is_file():
        message = f"real CT data not found at {root} (set FLARESEG_TEST_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
