"""Weights and checkpoints are saved atomically: a full disk is one line and leaves the old file."""

from __future__ import annotations

import subprocess
import sys

import torch

from flareseg.training.train import save_weights

_LIMITED_SAVE = """
import resource, signal, sys
import torch
from flareseg.errors import InputError
from flareseg.training.train import save_weights
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
try:
    save_weights({"w": torch.ones(100_000)}, sys.argv[1])
except InputError as error:
    print(error)
"""


def test_saved_weights_are_float16_and_leave_no_temporary(tmp_path):
    save_weights({"w": torch.ones(3), "steps": torch.tensor(2)}, tmp_path / "coarse.pt")
    state = torch.load(tmp_path / "coarse.pt", weights_only=True)
    assert state["w"].dtype == torch.float16 and state["steps"].dtype == torch.int64
    assert [p.name for p in tmp_path.iterdir()] == ["coarse.pt"]


def test_a_full_disk_is_one_line_and_keeps_the_old_weights(tmp_path):
    target = tmp_path / "coarse.pt"
    target.write_bytes(b"old weights")
    done = subprocess.run([sys.executable, "-c", _LIMITED_SAVE, str(target)], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.startswith(f"{target}: cannot write (disk full? ") and done.stdout.count("\n") == 1, done.stderr
    assert target.read_bytes() == b"old weights"
    assert [p.name for p in tmp_path.iterdir()] == ["coarse.pt"]
