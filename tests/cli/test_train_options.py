"""`flareseg train` refuses options that would be ignored or clash, in one line, before any work."""

from __future__ import annotations

import pytest

from flareseg.cli.main import main


@pytest.mark.parametrize("extra, message", [
    (["--keep", "0.5"], "--keep: options of the selection in --rounds"),
    (["--pseudo-labels", "R", "--max-entropy", "0.5"], "--max-entropy: options of the selection in --rounds"),
    (["--nproc", "2", "--pseudo-labels", "R", "--class-threshold", "1"], "--class-threshold: options of the selection"),
    (["--rounds", "1", "--keep", "0.5", "--max-entropy", "1"], "--keep, --max-entropy: the selection compares rounds"),
    (["--rounds", "2", "--nproc", "2"], "--rounds runs in one process"),
    (["--rounds", "2", "--pseudo-labels", "R"], "--rounds makes its own pseudo-labels"),
    (["--rounds", "2", "--resume"], "--rounds resumes by itself"),
])
def test_clashing_options_are_refused_before_any_work(extra, message, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "--dataset", str(tmp_path / "nothing"), "--out", str(out), *extra]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("flareseg: error:") and message in error and len(error.splitlines()) == 1
    assert not out.exists()


def test_one_gpu_named_for_several_processes_is_refused():
    import argparse

    from flareseg.cli.train_cmd import check_options
    from flareseg.errors import InputError

    args = argparse.Namespace(keep=None, class_threshold=None, max_entropy=None, nproc=2, rounds=None,
                              pseudo_labels=None, resume=False, device="cuda:1")
    with pytest.raises(InputError, match="CUDA_VISIBLE_DEVICES"):
        check_options(args, 1)
    check_options(argparse.Namespace(**{**vars(args), "device": "cuda"}), 1)  # one GPU per process: fine
