"""Training logs: one row per epoch, written as CSV and JSON, and a loss/DSC curve PNG."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def write_log(history: list[dict], folder: Path) -> None:
    """Write ``log.csv``, ``log.json`` and ``curves.png`` for the epochs so far."""
    if not history:
        return
    folder.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in history for key in row))
    with open(folder / "log.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    (folder / "log.json").write_text(json.dumps(history, indent=1))
    _plot(history, folder / "curves.png")


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = list(range(1, len(history) + 1))  # counted through all phases
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.plot(epochs, [row["train_loss"] for row in history], label="train loss")
    left.set_xlabel("epoch")
    left.legend()
    right.plot(epochs, [row["val_dice_mean"] for row in history], label="validation mean DSC", color="C1")
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
