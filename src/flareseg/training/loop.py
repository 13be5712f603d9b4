"""The training loop of one stage: phases, seeded epochs, validation DSC, checkpoints and exact resume.

A stage trains in one or more phases (:class:`flareseg.recipes.PhaseConfig`): each starts from
the weights the previous one ended with, builds the network with its own overrides (e.g. skip
connections off, then on), and trains only its ``trainable`` parameters with a fresh optimiser
and schedule. Every epoch re-seeds its own random streams from ``(seed, stage, [phase,] epoch)``,
so a run that was killed and resumed from the last checkpoint (which records the phase) replays
the same epochs as one that was not. The weights a stage ships are the best of its last phase.
With ``train.mean_teacher`` an EMA teacher trains along (:mod:`flareseg.training.mean_teacher`),
carried over phases and checkpointed with the student; it may be the weights shipped.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flareseg.errors import InputError
from flareseg.labels import label_name
from flareseg.inference.inferers import infer
from flareseg.io.atomic import atomic_path
from flareseg.models.registry import build_network
from flareseg.preprocessing.intensity import intensity_map
from flareseg.recipes import PhaseConfig, Recipe, StageConfig, TrainConfig
from flareseg.recipes.schema import MeanTeacherConfig
from flareseg.training.augment import KINDS, augment_pair, build_augmentation
from flareseg.training.distributed import World, unwrap, wrap
from flareseg.training.log import write_log
from flareseg.training.losses import IGNORE, build_recipe_loss
from flareseg.training.mean_teacher import (consistency_loss, ema_update, make_teacher, match_modes, noisy_view,
                                            sigmoid_rampup)
from flareseg.training.patches import cut_field_of_view, foreground_voxel, random_patch
from flareseg.training.samples import IGNORED, Sample

CHECKPOINT = "checkpoint_last.pt"


@dataclass(frozen=True)
class RunOptions:
    """Where and how to run: ``device`` ("cpu", "cuda"), ``resume`` from the last checkpoint,
    ``progress`` bars, CPU ``threads``, and this process's place among several (``world``,
    :mod:`flareseg.training.distributed`)."""

    device: str = "cpu"
    resume: bool = False
    progress: bool = True
    threads: int | None = None
    world: World = World()


def learning_rate(train: TrainConfig, epoch: int, epochs: int, base: float | None = None) -> float:
    """Learning rate of an epoch (0-based) out of ``epochs``, from ``base`` (default
    ``train.learning_rate``): step decay or poly."""
    base = train.learning_rate if base is None else base
    if train.schedule == "poly":
        return base * (1 - epoch / epochs) ** 0.9
    return base * train.lr_gamma ** (epoch // train.lr_step_epochs)


def make_batch(samples: list[Sample], indices, compose, device: str, patch=None):
    """Augmented batch: images ``[B, 1, *spatial]``, targets ``[B, *spatial]``, annotated ``[B, C]``
    and merged-label channel sets ``[B, K, C]`` (K the most any sample has; unused rows False).

    ``patch``, when given, takes each image/label pair to the network's input size first, given
    its place in the batch (random patches or 2D slice patches of a stage at a fixed spacing;
    see :func:`patch_sampler`).
    """
    images, targets = [], []
    for row, i in enumerate(indices):
        image, label = samples[i].image, samples[i].label
        image, label = patch(image, label, row) if patch is not None else (image.astype(np.float32), label)
        if compose is not None:
            image, label = augment_pair(compose, image, label)
        images.append(image[None])
        targets.append(np.where(label == IGNORED, IGNORE, label.astype(np.int64)))  # a dropped pseudo-label
    annotated = np.stack([samples[i].annotated for i in indices])
    sets = np.zeros((len(annotated), max(len(samples[i].sets) for i in indices), annotated.shape[1]), bool)
    for row, i in enumerate(indices):
        sets[row, :len(samples[i].sets)] = samples[i].sets
    return (torch.from_numpy(np.stack(images)).to(device), torch.from_numpy(np.stack(targets)).to(device),
            torch.from_numpy(annotated).to(device), torch.from_numpy(sets).to(device))


def batch_own_annotated(samples: list[Sample], indices, device: str) -> torch.Tensor | None:
    """``[B, C]`` bool: the channels each sample's case annotates itself (``Sample.own_annotated``,
    else all of its ``annotated``); None when no sample of the batch holds pseudo-labels."""
    if all(samples[i].own_annotated is None for i in indices):
        return None
    own = [samples[i].annotated if samples[i].own_annotated is None else samples[i].own_annotated for i in indices]
    return torch.from_numpy(np.stack(own)).to(device)


def forced_foreground(row: int, batch_size: int, share: float) -> bool:
    """nnU-Net's foreground oversampling: the last ``round(batch_size * share)`` patches of a batch
    hold a labelled voxel (e.g. 4 of 12 with a third), the others lie anywhere."""
    return not row < round(batch_size * (1 - share))


def patch_sampler(stage: StageConfig, recipe: Recipe, rng: np.random.Generator):
    """For a stage at a fixed spacing: a function ``(image, label, row in batch) -> (image, label)``
    taking a random ``size_zyx`` patch (``spacing_patches``), or a random ``[y, x]`` patch of a
    random slice (``slices_2d``), holding a random labelled voxel where :func:`forced_foreground`
    says so, cut to a random field of view with probability ``augment.field_of_view`` (3D only);
    None for stages whose samples already have the input size."""
    if stage.sampler not in ("spacing_patches", "slices_2d"):
        return None
    air = intensity_map(recipe.preprocess).air
    flat = stage.sampler == "slices_2d"
    size = (1, *stage.size_zyx) if flat else tuple(stage.size_zyx)
    probability = 0.0 if flat else float(recipe.train.augment.get("field_of_view", 0.0))
    train = recipe.train

    def patch(image: np.ndarray, label: np.ndarray, row: int):
        rng.random()  # one draw per patch, as before batch positions decided: the same patches for a share of 0
        forced = forced_foreground(row, train.batch_size, train.foreground_share)
        holding = foreground_voxel(label, rng, IGNORED) if forced else None
        image, label = random_patch(image, label, size, rng, air, holding)
        if rng.random() < probability:
            image, label = cut_field_of_view(image, label, rng, air)
        return (image[0], label[0]) if flat else (image, label)

    return patch


def validation_dice(net, samples: list[Sample], channels: int, device: str, multiple: int = 1,
                    pad_value: float = 0.0, sampler: str = "spacing_patches") -> np.ndarray:
    """Per-channel DSC over the validation samples (argmax); NaN where never annotated and present.

    Each sample is run as prediction runs the stage's input (:func:`flareseg.inference.inferers.infer`:
    padded with ``pad_value`` for the network, or slice by slice).
    """
    inter, total = np.zeros(channels), np.zeros(channels)
    net.eval()

    def runner(x: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy(x).to(device)).float().cpu().numpy()

    with torch.inference_mode():
        for sample in samples:
            pred = infer(runner, sample.image.astype(np.float32), sampler, multiple, pad_value, labels=True)
            for c in range(1, channels):  # members of a merged label cannot be told apart: not scored
                if sample.annotated[c] and not sample.sets[:, c].any():
                    inter[c] += np.count_nonzero((pred == c) & (sample.label == c))
                    total[c] += np.count_nonzero(pred == c) + np.count_nonzero(sample.label == c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * inter / total, np.nan)


def _autocast(device: str):
    if device.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)  # fp32 on CPU: bf16 is far slower there


def save_torch(obj, path: Path) -> None:
    """``torch.save`` atomically (:func:`flareseg.io.atomic.atomic_path`).

    Raises:
        InputError: The file cannot be written (a full disk: torch reports it as a RuntimeError).
    """
    with atomic_path(path) as temporary:
        try:
            torch.save(obj, temporary)
        except RuntimeError as error:
            raise InputError(f"{path}: cannot write (disk full? {str(error).strip().splitlines()[0][:160]})") from None


def _save_checkpoint(state: dict, folder: Path) -> None:
    save_torch(state, folder / CHECKPOINT)


def _train_mode(net: torch.nn.Module) -> None:
    net.train()
    for module in net.modules():  # frozen normalisation keeps its running statistics too
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in module.parameters()):
            module.eval()


def _step(loss: torch.Tensor, net, optimizer, scaler, grad_clip: float | None) -> None:
    """Backpropagate ``loss`` and take one optimiser step (through ``scaler`` where one is given)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        optimizer.step()


@dataclass
class _Teacher:
    """A stage's mean teacher during one epoch: its network, its settings, the epoch of the phase
    (0-based, for the ramp-up) and the generator of its view's noise."""

    net: torch.nn.Module
    config: MeanTeacherConfig
    epoch: int
    noise: torch.Generator | None = None


def _start_teacher(teacher: _Teacher, net, seed, device: str) -> None:
    """Put the teacher in the student's modes and seed its noise from a child of the epoch's seed
    sequence: resume replays it, and the student's own random streams stay those of a run
    without a teacher."""
    match_modes(teacher.net, net)
    child = np.random.SeedSequence(seed).spawn(1)[0]
    teacher.noise = torch.Generator(device=device)
    teacher.noise.manual_seed(int(child.generate_state(1)[0]))


def _consistency(teacher: _Teacher, x: torch.Tensor, outputs, device: str) -> torch.Tensor:
    """The unweighted consistency loss of the student's ``outputs`` on the batch ``x`` against the
    teacher's on a noisy view of it (:mod:`flareseg.training.mean_teacher`)."""
    with torch.no_grad(), _autocast(device):
        target = teacher.net(noisy_view(x, teacher.config.noise, teacher.noise))
    return consistency_loss(outputs, target)


@dataclass
class _Trained:
    """What an epoch trains: ``model`` (the network, in DistributedDataParallel on several
    processes), its ``optimizer``, the ``loss`` and the mean ``teacher`` (None without)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss: object
    teacher: _Teacher | None = None


def _epoch(trained: _Trained, samples, stage: StageConfig, recipe: Recipe, seed, options: RunOptions,
           desc: str) -> dict[str, float]:
    """One epoch; returns its mean ``train_loss`` (supervised) and, with a teacher, its mean
    ``consistency`` (unweighted). The teacher follows the student after every optimiser step."""
    net, optimizer, loss_fn, teacher = trained.model, trained.optimizer, trained.loss, trained.teacher
    train, world = recipe.train, options.world
    rng = np.random.default_rng(seed)  # draws the batches: the same on every process
    torch.manual_seed(int(rng.integers(2 ** 31)))
    own = rng if world.size == 1 else np.random.default_rng([*seed, 1 + world.rank])  # patches, augmentation
    compose = None
    if any(train.augment.get(kind, 0.0) for kind in KINDS):
        dims = recipe.stage_network(stage).spatial_dims
        compose = build_augmentation(train.augment, int(own.integers(2 ** 31)), intensity_map(recipe.preprocess), dims)
    patch = patch_sampler(stage, recipe, own)
    scaler = torch.amp.GradScaler("cuda") if options.device.startswith("cuda") and not torch.cuda.is_bf16_supported() else None
    _train_mode(net)
    if teacher is not None:
        _start_teacher(teacher, unwrap(net), seed, options.device)
    losses, consistencies = [], []
    from tqdm import tqdm

    bar = tqdm(range(train.iterations_per_epoch), desc=desc, unit="it", leave=False, disable=not options.progress)
    for step in bar:
        drawn = rng.integers(len(samples), size=train.batch_size * world.size)  # each process its share
        indices = drawn[world.rank * train.batch_size:(world.rank + 1) * train.batch_size]
        x, y, annotated, sets = make_batch(samples, indices, compose, options.device, patch)
        with _autocast(options.device):
            outputs = net(x)
        loss = total = loss_fn(outputs, y, annotated, sets, batch_own_annotated(samples, indices, options.device))
        if teacher is not None:
            consistency = _consistency(teacher, x, outputs, options.device)
            ramp = sigmoid_rampup(teacher.epoch + step / train.iterations_per_epoch, teacher.config.rampup_epochs)
            total = loss + teacher.config.weight * ramp * consistency
            consistencies.append(consistency.item())
        _step(total, net, optimizer, scaler, train.grad_clip)
        if teacher is not None:
            ema_update(teacher.net, unwrap(net), teacher.config.ema)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return {"train_loss": float(np.mean(losses)), **({"consistency": float(np.mean(consistencies))} if teacher else {})}


def trainable_parameters(net: torch.nn.Module, patterns) -> list[torch.nn.Parameter]:
    """The parameters whose names match one of the ``fnmatch`` ``patterns`` (all when there are
    none); the others get ``requires_grad = False``.

    Raises:
        InputError: The patterns match no parameter.
    """
    chosen = []
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns))
        if parameter.requires_grad:
            chosen.append(parameter)
    if not chosen:
        raise InputError(f"trainable patterns {list(patterns)} match no parameter of the network")
    return chosen


def make_optimizer(parameters, phase: PhaseConfig, train: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum (nnU-Net's), over ``parameters``."""
    if phase.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=phase.learning_rate, momentum=train.momentum, nesterov=True,
                               weight_decay=train.weight_decay)
    return torch.optim.AdamW(parameters, lr=phase.learning_rate, weight_decay=train.weight_decay)


def _phase_network(recipe: Recipe, stage: StageConfig, phase: int, device: str, weights: dict | None = None):
    network = recipe.stage_network(stage, phase)
    net = build_network(network.name, network.kwargs, stage.channels).to(device)
    if weights is not None:
        net.load_state_dict(weights)  # strict: a phase's overrides must keep the parameters
    return net


def _teacher_network(train: TrainConfig, student, weights: dict | None = None):
    """The stage's mean teacher, built like ``student`` (a copy) with ``weights`` (default the
    student's); None without ``train.mean_teacher``."""
    return None if train.mean_teacher is None else make_teacher(student, weights)


@dataclass
class _StageRun:
    """What the epochs of one stage share: the validation samples, the class names of the log and
    the padding of the network's input."""

    validation: list[Sample]
    names: list[str]
    air: float
    folder: Path


def _validate_and_save(run: _StageRun, state: dict, row: dict, trained: _Trained, recipe: Recipe,
                       stage: StageConfig, options: RunOptions) -> None:
    """The end of an epoch on rank 0: validation DSC of the network shipped (the student's, or the
    mean teacher's with ``ship: teacher``), the best weights of the last phase, the checkpoint and
    the log."""
    net = unwrap(trained.model)
    teacher = trained.teacher.net if trained.teacher is not None else None
    shipped = teacher if teacher is not None and recipe.train.mean_teacher.ship == "teacher" else net
    phase = row["phase"] - 1
    last, multiple = phase == len(recipe.phases(stage)) - 1, recipe.stage_network(stage, phase).size_multiple
    desc, start = row.pop("desc"), row.pop("start")
    dice = validation_dice(shipped, run.validation, stage.channels, options.device, multiple, run.air, stage.sampler)
    score = float(np.nanmean(dice[1:])) if np.isfinite(dice[1:]).any() else 0.0
    row["val_dice_mean"] = score
    row.update({f"val_dice_{name}": float(d) for name, d in zip(run.names, dice[1:])})
    row["seconds"] = time.perf_counter() - start
    state["history"].append(row)
    if last and score > state["best_score"]:
        state["best_score"], state["best_net"] = score, copy.deepcopy(shipped.state_dict())
    state.update(epoch=row["epoch"], net=net.state_dict(), optimizer=trained.optimizer.state_dict())
    if teacher is not None:
        state["teacher"] = teacher.state_dict()
    _save_checkpoint(state, run.folder)
    write_log(state["history"], run.folder)
    if options.progress:
        from tqdm import tqdm

        tqdm.write(f"{desc}: loss {row['train_loss']:.3f}, validation mean DSC {score:.3f}, {row['seconds']:.0f} s")


def train_stage(stage: StageConfig, stage_index: int, recipe: Recipe, train_samples: list[Sample],
                val_samples: list[Sample], folder: Path, options: RunOptions,
                phase_samples: list[list[Sample]] | None = None) -> dict | None:
    """Train one stage through its phases; returns the best weights of its last phase (a state
    dict; None on the ranks but 0 of a run on several processes). Checkpoints to ``folder`` every
    epoch. ``phase_samples``, when given, are the training samples of each phase (its label
    patterns, its pseudo-labels); else ``train_samples``."""
    if not train_samples:
        raise InputError(f"stage {stage.name!r}: no training case annotates any of its classes {list(stage.labels)}")
    folder.mkdir(parents=True, exist_ok=True)
    if options.threads:
        torch.set_num_threads(options.threads)
    train, world = recipe.train, options.world
    phases = recipe.phases(stage)
    loss_fn = build_recipe_loss(train.loss)
    state = {"phase": 0, "epoch": 0, "best_score": -math.inf, "best_net": None, "history": []}
    resumed = options.resume and (folder / CHECKPOINT).is_file()
    if resumed:
        state = torch.load(folder / CHECKPOINT, map_location=options.device, weights_only=False)
        state.setdefault("phase", 0)
    torch.manual_seed(train.seed + stage_index)  # the same initial weights on every run
    net = _phase_network(recipe, stage, state["phase"], options.device, state.get("net") if resumed else None)
    teacher = _teacher_network(train, net, state.get("teacher") if resumed else None)
    run = _StageRun(val_samples or train_samples,
                    ["foreground"] if stage.foreground else [label_name(i) for i in stage.labels],
                    intensity_map(recipe.preprocess).air, folder)
    first_phase = state["phase"]
    for index in range(first_phase, len(phases)):
        phase = phases[index]
        if index > first_phase:  # weights carried over, optimiser and schedule start afresh
            net = _phase_network(recipe, stage, index, options.device, net.state_dict())
            teacher = _teacher_network(train, net, None if teacher is None else teacher.state_dict())  # EMA kept
            state.update(phase=index, epoch=0)
        optimizer = make_optimizer(trainable_parameters(net, phase.trainable), phase, train)
        model = wrap(net, world, options.device)  # after the trainable parameters are chosen
        if index == first_phase and resumed and state["epoch"] < phase.epochs:
            optimizer.load_state_dict(state["optimizer"])
        for epoch in range(state["epoch"], phase.epochs):
            start = time.perf_counter()
            rate = learning_rate(train, epoch, phase.epochs, phase.learning_rate)
            for group in optimizer.param_groups:
                group["lr"] = rate
            seed = [train.seed, stage_index, epoch] if index == 0 else [train.seed, stage_index, index, epoch]
            desc = f"{stage.name}{f' phase {index + 1}' if len(phases) > 1 else ''} {epoch + 1}/{phase.epochs}"
            samples = phase_samples[index] if phase_samples else train_samples
            trained = _Trained(model, optimizer, loss_fn,
                               None if teacher is None else _Teacher(teacher, train.mean_teacher, epoch))
            losses = _epoch(trained, samples, stage, recipe, seed, options, desc)
            state["epoch"] = epoch + 1
            if world.main:
                row = {"phase": index + 1, "epoch": epoch + 1, "lr": rate, **losses, "start": start, "desc": desc}
                _validate_and_save(run, state, row, trained, recipe, stage, options)
    return state["best_net"] if world.main else None
