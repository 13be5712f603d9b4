"""``flareseg train``: train a recipe on a dataset folder into a model directory."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(subparsers) -> None:
    from flareseg.cli.arguments import device, fraction, positive_float, positive_int
    from flareseg.cli.pseudolabel_cmd import nats, share
    from flareseg.recipes import builtin_recipes

    train = subparsers.add_parser(
        "train", help="train a recipe on a dataset folder (nnU-Net layout)",
        description="Train every stage of a recipe and write a self-contained model directory "
        "(weights, resolved recipe, label map, logs). Settings given here are saved in the recipe.",
    )
    train.add_argument("--dataset", required=True, type=Path, help="dataset folder (imagesTr, labelsTr, dataset.json)")
    train.add_argument("--recipe", default="coarse_to_fine",
                       help=f"built-in recipe ({', '.join(builtin_recipes())}) or a YAML file (default: coarse_to_fine)")
    train.add_argument("--out", required=True, type=Path, help="model directory to write")
    train.add_argument("--device", default="auto", type=device,
                       help="cpu, cuda, cuda:N or auto (CUDA when present; default)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    train.add_argument("--cache", type=Path, help="folder for preprocessed cases (default: OUT/training/cache)")
    train.add_argument("--teacher", type=Path,
                       help="a trained model directory whose predictions fill what cases do not annotate, "
                            "for recipe phases with pseudo_labels: true")
    train.add_argument("--pseudo-labels", type=Path, metavar="ROUND",
                       help="a round of `flareseg pseudolabel` (DATASET/pseudoLabelsTr/roundN), with its selection: "
                            "the pseudo-labels of the recipe's pseudo-label phases (a recipe naming none trains "
                            "every stage on all cases, labelled and unlabelled)")
    train.add_argument("--rounds", type=positive_int, metavar="N",
                       help="teacher -> pseudo-labels -> student, N times (the FLARE22 winner's loop): trains "
                            "OUT/teacher (or starts from --teacher), then OUT/student1..N; the last is the model")
    train.add_argument("--keep", type=share,
                       help="with --rounds: share of cases whose pseudo-labels are kept from round 2 on (default "
                            "0.962, the FLARE22 winner's 1924 of 2000)")
    train.add_argument("--class-threshold", type=float, metavar="X",
                       help="with --rounds: also drop a kept case's class whose instability exceeds X "
                            "(flareseg's extension)")
    train.add_argument("--max-entropy", type=nats, metavar="X",
                       help="with --rounds: also drop a kept case's class whose mean softmax entropy (nats) in the "
                            "last round exceeds X (flareseg's extension)")
    train.add_argument("--threads", type=positive_int, help="CPU threads (of each process with --nproc)")
    train.add_argument("--nproc", type=positive_int, metavar="N",
                       help="train in N processes on this machine (DistributedDataParallel through torchrun; "
                            "each draws its share of every batch); `torchrun --nproc-per-node N -m flareseg train "
                            "...` runs the same on a cluster")
    train.add_argument("--epochs", type=positive_int,
                       help="epochs of every stage and of every phase (replaces the recipe's train.epochs and any "
                            "per-stage or per-phase epochs)")
    for flag, kind, what in (("iterations", positive_int, "iterations per epoch"),
                             ("batch-size", positive_int, "batch size"),
                             ("lr", positive_float, "initial learning rate (not of phases that set their own)"),
                             ("val-fraction", fraction, "fraction of labelled cases held out for validation"),
                             ("seed", int, "random seed")):
        train.add_argument(f"--{flag}", type=kind, help=f"override the recipe's {what}")
    train.add_argument("--schedule", choices=("step", "poly"), help="override the recipe's learning-rate schedule")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(run=run_train)


_OVERRIDES = {"epochs": "epochs", "iterations": "iterations_per_epoch", "batch_size": "batch_size",
              "lr": "learning_rate", "val_fraction": "val_fraction", "schedule": "schedule", "seed": "seed"}


def check_options(args: argparse.Namespace, world_size: int) -> None:
    """Refuse options that would be ignored or clash, before any process starts.

    Raises:
        InputError: The clash, in one line.
    """
    from flareseg.errors import InputError

    selecting = [flag for flag, value in (("--keep", args.keep), ("--class-threshold", args.class_threshold),
                                          ("--max-entropy", args.max_entropy)) if value is not None]
    processes = max(args.nproc or 1, world_size)
    if args.rounds and processes > 1:
        raise InputError("--rounds runs in one process; train a round's student with --nproc and --pseudo-labels")
    if args.rounds and args.pseudo_labels is not None:
        raise InputError("--rounds makes its own pseudo-labels; leave out --pseudo-labels")
    if args.rounds and args.resume:
        raise InputError("--rounds resumes by itself: run the same command again, without --resume")
    if selecting and not args.rounds:
        raise InputError(f"{', '.join(selecting)}: options of the selection in --rounds; with --pseudo-labels, "
                         "select with `flareseg pseudolabel --select`")
    if selecting and args.rounds == 1:
        raise InputError(f"{', '.join(selecting)}: the selection compares rounds, so it needs --rounds 2 or more")
    if processes > 1 and args.device.startswith("cuda:"):
        raise InputError("--nproc places one process on each GPU: give --device cuda and choose the GPUs with "
                         "CUDA_VISIBLE_DEVICES")


def run_train(args: argparse.Namespace) -> int:
    import torch

    from flareseg.recipes import load_recipe
    from flareseg.training.distributed import process_group, world_from_environment
    from flareseg.training.loop import RunOptions
    from flareseg.training.train import train_model

    world = world_from_environment()
    check_options(args, world.size)
    if args.nproc and args.nproc > 1 and world.size == 1:
        return _launch(args)
    overrides = {key: getattr(args, arg) for arg, key in _OVERRIDES.items() if getattr(args, arg) is not None}
    recipe = load_recipe(args.recipe, overrides)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    options = RunOptions(device=device, resume=args.resume, progress=not args.no_progress and world.main,
                         threads=args.threads, world=world)
    if world.main:
        print(f"training recipe {recipe.name!r} ({len(recipe.stages)} stages) on {device}"
              f"{f', {world.size} processes' if world.size > 1 else ''}")
    if args.rounds:
        out = _train_rounds(args, recipe, options)
    else:
        with process_group(world, device):
            out = train_model(args.dataset, recipe, args.out, options, args.cache, args.teacher, args.pseudo_labels)
    if world.main:
        print(f"model written to {out}")
    return 0


def without_nproc(argv: list[str]) -> list[str]:
    """The command line without ``--nproc N`` / ``--nproc=N``."""
    kept, value_follows = [], False
    for arg in argv:
        if not value_follows and arg != "--nproc" and not arg.startswith("--nproc="):
            kept.append(arg)
        value_follows = arg == "--nproc"
    return kept


def _launch(args: argparse.Namespace) -> int:
    """Run this command again in ``--nproc`` processes through torchrun."""
    import os
    import sys

    from flareseg.training.distributed import launch

    argv = without_nproc(args.argv)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.nproc)
    if not args.threads:
        argv += ["--threads", str(threads)]
    code = launch(argv, args.nproc, threads)
    if code:
        from flareseg.training.loop import CHECKPOINT

        checkpoints = list((args.out / "training").glob(f"*/{CHECKPOINT}")) if args.out.is_dir() else []
        advice = ("run the same command with --resume to continue from the last checkpoint" if checkpoints
                  else "nothing was trained yet: see the messages above")
        print(f"flareseg: error: a training process failed (exit code {code}); {advice}", file=sys.stderr)
    return 1 if code else 0


def _train_rounds(args: argparse.Namespace, recipe, options):
    from flareseg.training.rounds import RoundsConfig, train_rounds

    keep = RoundsConfig.keep if args.keep is None else args.keep
    config = RoundsConfig(args.rounds, args.teacher, keep, args.class_threshold, args.max_entropy)
    return train_rounds(args.dataset, recipe, args.out, config, options, args.cache)
