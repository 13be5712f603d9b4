"""Write efficiency traces: CSV and JSON of the figures, one PNG of memory over time per case."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from flareseg.evaluation.efficiency import Trace

COLUMNS = ("time_s", "peak_ram_mb", "auc_ram_mb_s", "auc_cpu_percent_s", "peak_gpu_mb", "auc_gpu_mb_s", "returncode")


def write_efficiency(traces: dict[str, Trace], out: Path) -> dict[str, dict]:
    """Write ``efficiency.csv``, ``efficiency.json`` and ``plots/<case>.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    figures = {case: trace.summary() for case, trace in traces.items()}
    with open(out / "efficiency.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", *COLUMNS])
        for case, row in figures.items():
            writer.writerow([case, *("" if row[c] is None else _round(row[c]) for c in COLUMNS)])
    samples = {
        case: {"interval_s": t.interval_s, "times_s": t.times_s, "ram_mb": t.ram_mb, "cpu_percent": t.cpu_percent,
               "gpu_mb": t.gpu_mb}
        for case, t in traces.items()
    }
    (out / "efficiency.json").write_text(json.dumps({"figures": figures, "samples": samples}, indent=1))
    for case, trace in traces.items():
        plot_trace(trace, case, out / "plots" / f"{case}.png")
    return figures


def plot_trace(trace: Trace, title: str, path: Path) -> None:
    """Memory (and GPU memory) over time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(7, 3.5), dpi=100)
    axis.plot(trace.times_s, trace.ram_mb, label=f"RAM (peak {max(trace.ram_mb, default=0):.0f} MB)")
    if trace.gpu_mb:
        axis.plot(trace.times_s, trace.gpu_mb, label=f"GPU memory (peak {max(trace.gpu_mb):.0f} MB)")
    axis.set_xlabel("time (s)")
    axis.set_ylabel("memory (MB)")
    axis.set_title(f"{title}: {trace.wall_s:.1f} s")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def format_figures(figures: dict[str, dict]) -> str:
    """A text table of the per-case figures."""
    header = f"{'case':<24} {'time s':>8} {'peak RAM MB':>12} {'RAM AUC MB*s':>13} {'CPU AUC %*s':>12} {'peak GPU MB':>12}"
    lines = [header]
    for case, row in figures.items():
        gpu = "-" if row["peak_gpu_mb"] is None else f"{row['peak_gpu_mb']:.0f}"
        lines.append(f"{case:<24} {row['time_s']:>8.2f} {row['peak_ram_mb']:>12.1f} {row['auc_ram_mb_s']:>13.1f} "
                     f"{row['auc_cpu_percent_s']:>12.1f} {gpu:>12}")
    return "\n".join(lines)


def _round(value):
    return round(value, 4) if isinstance(value, float) else value
