"""Quality control of predicted masks: per-organ measures, flags and a cohort report.

``flareseg qc OUT`` reads every mask in the output folder of ``flareseg predict`` with its CT
(:mod:`flareseg.qc.inputs`), measures each organ (:mod:`flareseg.qc.measures`), flags what looks
wrong (:mod:`flareseg.qc.flags`, with the volume ranges of :mod:`flareseg.qc.ranges`) and writes
``OUT/qc.csv`` and ``OUT/qc.png`` (:mod:`flareseg.qc.report`, :mod:`flareseg.qc.figure`).
"""

from flareseg.qc.flags import Flag, case_flags
from flareseg.qc.inputs import QCInput, qc_inputs
from flareseg.qc.measures import OrganMeasures, ScanExtent, measure_organs, scan_extent
from flareseg.qc.report import CaseQC, qc_case, summary_lines, write_qc_csv

__all__ = [
    "CaseQC",
    "Flag",
    "OrganMeasures",
    "QCInput",
    "ScanExtent",
    "case_flags",
    "measure_organs",
    "qc_case",
    "qc_inputs",
    "scan_extent",
    "summary_lines",
    "write_qc_csv",
]
