"""``flareseg demo``: run the pipeline on the bundled sample CT."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(subparsers) -> None:
    demo = subparsers.add_parser(
        "demo", help="run flareseg on the bundled sample CT",
        description="Read the bundled sample CT, reorient it to the network's canonical grid and back, "
        "write a label map that overlays it, and score that map against the bundled reference labels. "
        "(Segmentation with the default model joins this demo once the model ships.)",
    )
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: demo_output)")
    demo.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from flareseg.data import sample_ct_path, sample_labels_path
    from flareseg.io import read_ct, read_volume, write_labelmap, write_volume
    from flareseg.preprocessing.orientation import align_to, to_canonical

    ct = read_ct(sample_ct_path())
    print(f"sample CT: {ct.geometry.describe()}, HU {ct.array.min()} .. {ct.array.max()}")
    canonical, reorientation = to_canonical(ct)
    print(f"canonical grid for the network: {canonical.geometry.describe()}")
    write_volume(canonical, args.out / "sample_ct_canonical.nii.gz")
    # Stand-in for a network output on the canonical grid: the reference labels, reoriented.
    reference = align_to(read_volume(sample_labels_path()), ct.geometry)
    canonical_mask = reorientation.apply(reference.array)
    mask = reorientation.invert(canonical_mask)
    if not np.array_equal(mask, reference.array):
        raise RuntimeError("reorientation round trip is not exact")
    path = write_labelmap(mask, ct.geometry, args.out / "sample_mask.nii.gz")
    print(f"wrote {path}: overlays the sample CT ({ct.geometry.describe()})")

    from flareseg.evaluation.evaluate import score_case
    from flareseg.evaluation.report import format_table, summarise
    from flareseg.evaluation.rules import ScoringRules

    scores = score_case(reference, read_volume(path), "sample", ScoringRules(), threads=2)
    print("FLARE scores of the written mask against the reference labels (a round-trip check):")
    print(format_table(summarise(scores)))
    return 0
