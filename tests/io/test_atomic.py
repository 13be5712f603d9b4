"""Atomic writes: the file appears complete or not at all, and an old one survives a failure."""

from __future__ import annotations

import pytest

from flareseg.errors import InputError
from flareseg.io.atomic import atomic_path, atomic_write_text, temporary_path


def test_text_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    assert atomic_write_text(target, "new\n") == target
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_temporary_is_hidden_beside_the_target_and_keeps_its_ending(tmp_path):
    temporary = temporary_path(tmp_path / "mask.nii.gz", ".nii.gz")
    assert temporary.parent == tmp_path and temporary.name.startswith(".mask.") and temporary.name.endswith(".nii.gz")
    assert temporary_path(tmp_path / "cache.npz").suffix == ".npz"
    assert temporary_path(tmp_path / "a.json") != temporary_path(tmp_path / "a.json")


def test_an_exception_in_the_block_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.json"
    target.write_text("old")
    with pytest.raises(KeyError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise KeyError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]


def test_an_os_error_is_a_one_line_input_error(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()  # a file cannot replace a folder
    with pytest.raises(InputError, match=r"folder: cannot write \(Is a directory\)$"):
        atomic_write_text(target, "text")
    assert [p.name for p in tmp_path.iterdir()] == ["folder"]
    with pytest.raises(InputError, match="cannot write"):
        atomic_write_text(tmp_path / "missing" / "a.json", "text")


_LIMITED_WRITE = """
import resource, signal, sys
from flareseg.errors import InputError
from flareseg.io.atomic import atomic_write_text
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
try:
    atomic_write_text(sys.argv[1], "x" * 100_000)
except InputError as error:
    print(error)
"""


def test_a_full_disk_keeps_the_old_file(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "summary.json"
    target.write_text("old")
    done = subprocess.run([sys.executable, "-c", _LIMITED_WRITE, str(target)], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout == f"{target}: cannot write (File too large)\n", done.stderr
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
