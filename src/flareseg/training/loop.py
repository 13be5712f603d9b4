"""The training loop of one stage: seeded epochs, validation DSC, checkpoints and exact resume.

Every epoch re-seeds its own random streams from ``(seed, stage, epoch)``, so a run that was
killed and resumed from the last checkpoint replays the same epochs as one that was not.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flareseg.errors import InputError
from flareseg.labels import label_name
from flareseg.models.registry import build_network
from flareseg.preprocessing.crop import crop, pad_for_network
from flareseg.preprocessing.intensity import air_value
from flareseg.recipes import Recipe, StageConfig, TrainConfig
from flareseg.training.augment import KINDS, augment_pair, build_augmentation
from flareseg.training.log import write_log
from flareseg.training.losses import dice_ce_loss
from flareseg.training.patches import cut_field_of_view, foreground_voxel, random_patch
from flareseg.training.samples import Sample

CHECKPOINT = "checkpoint_last.pt"


@dataclass(frozen=True)
class RunOptions:
    """Where and how to run: ``device`` ("cpu", "cuda"), ``resume`` from the last checkpoint,
    ``progress`` bars, CPU ``threads``."""

    device: str = "cpu"
    resume: bool = False
    progress: bool = True
    threads: int | None = None


def learning_rate(train: TrainConfig, epoch: int, epochs: int) -> float:
    """Learning rate of an epoch (0-based) out of ``epochs``: step decay or poly."""
    if train.schedule == "poly":
        return train.learning_rate * (1 - epoch / epochs) ** 0.9
    return train.learning_rate * train.lr_gamma ** (epoch // train.lr_step_epochs)


def make_batch(samples: list[Sample], indices, compose, device: str, patch=None):
    """Augmented batch: images ``[B, 1, D, H, W]``, targets ``[B, D, H, W]``, annotated ``[B, C]``
    and merged-label channel sets ``[B, K, C]`` (K the most any sample has; unused rows False).

    ``patch``, when given, takes each image/label pair to the network's input size first
    (random patches of a whole-volume stage at a fixed spacing; see :func:`patch_sampler`).
    """
    images, targets = [], []
    for i in indices:
        image, label = samples[i].image, samples[i].label
        image, label = patch(image, label) if patch is not None else (image.astype(np.float32), label)
        if compose is not None:
            image, label = augment_pair(compose, image, label)
        images.append(image[None])
        targets.append(label.astype(np.int64))
    annotated = np.stack([samples[i].annotated for i in indices])
    sets = np.zeros((len(annotated), max(len(samples[i].sets) for i in indices), annotated.shape[1]), bool)
    for row, i in enumerate(indices):
        sets[row, :len(samples[i].sets)] = samples[i].sets
    return (torch.from_numpy(np.stack(images)).to(device), torch.from_numpy(np.stack(targets)).to(device),
            torch.from_numpy(annotated).to(device), torch.from_numpy(sets).to(device))


def patch_sampler(stage: StageConfig, recipe: Recipe, rng: np.random.Generator):
    """For a stage with ``spacing_mm``: a function taking a random ``size_zyx`` patch of an
    image/label pair (holding a random labelled voxel with probability ``train.foreground_share``),
    cut to a random field of view with probability ``augment.field_of_view``; None for stages
    whose samples already have the input size."""
    if stage.spacing_mm is None:
        return None
    air = air_value(recipe.preprocess.hu_window)
    probability = float(recipe.train.augment.get("field_of_view", 0.0))

    def patch(image: np.ndarray, label: np.ndarray):
        holding = foreground_voxel(label, rng) if rng.random() < recipe.train.foreground_share else None
        image, label = random_patch(image, label, stage.size_zyx, rng, air, holding)
        if rng.random() < probability:
            image, label = cut_field_of_view(image, label, rng, air)
        return image, label

    return patch


def validation_dice(net, samples: list[Sample], channels: int, device: str, multiple: int = 1,
                    pad_value: float = 0.0) -> np.ndarray:
    """Per-channel DSC over the validation samples (argmax); NaN where never annotated and present.

    Samples of any size are padded with ``pad_value`` for the network first, as prediction pads them.
    """
    inter, total = np.zeros(channels), np.zeros(channels)
    net.eval()
    with torch.inference_mode():
        for sample in samples:
            image, box = pad_for_network(sample.image.astype(np.float32), multiple, pad_value)
            x = torch.from_numpy(image[None, None]).to(device)
            pred = crop(net(x).argmax(1)[0].cpu().numpy(), box)
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


def _save_checkpoint(state: dict, folder: Path) -> None:
    tmp = folder / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, folder / CHECKPOINT)


def _epoch(net, optimizer, samples, stage: StageConfig, recipe: Recipe, seed, options: RunOptions, desc: str) -> float:
    train = recipe.train
    rng = np.random.default_rng(seed)
    torch.manual_seed(int(rng.integers(2 ** 31)))
    compose = None
    if any(train.augment.get(kind, 0.0) for kind in KINDS):
        compose = build_augmentation(train.augment, int(rng.integers(2 ** 31)), recipe.preprocess.hu_window)
    patch = patch_sampler(stage, recipe, rng)
    scaler = torch.amp.GradScaler("cuda") if options.device.startswith("cuda") and not torch.cuda.is_bf16_supported() else None
    net.train()
    losses = []
    from tqdm import tqdm

    bar = tqdm(range(train.iterations_per_epoch), desc=desc, unit="it", leave=False, disable=not options.progress)
    for _ in bar:
        x, y, annotated, sets = make_batch(samples, rng.integers(len(samples), size=train.batch_size), compose,
                                     options.device, patch)
        with _autocast(options.device):
            logits = net(x)
        loss = dice_ce_loss(logits, y, annotated, train.dice_weight, train.ce_weight, sets=sets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return float(np.mean(losses))


def train_stage(stage: StageConfig, stage_index: int, recipe: Recipe, train_samples: list[Sample],
                val_samples: list[Sample], folder: Path, options: RunOptions) -> dict:
    """Train one stage; returns the best weights (a state dict). Checkpoints to ``folder`` every epoch."""
    if not train_samples:
        raise InputError(f"stage {stage.name!r}: no training case annotates any of its classes {list(stage.labels)}")
    folder.mkdir(parents=True, exist_ok=True)
    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(recipe.train.seed + stage_index)  # the same initial weights on every run
    net = build_network(recipe.network.name, recipe.network.kwargs, len(stage.labels) + 1).to(options.device)
    train = recipe.train
    optimizer = torch.optim.AdamW(net.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay)
    state = {"epoch": 0, "best_score": -math.inf, "best_net": None, "history": []}
    if options.resume and (folder / CHECKPOINT).is_file():
        state = torch.load(folder / CHECKPOINT, map_location=options.device, weights_only=False)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
    validation = val_samples or train_samples
    epochs = stage.epochs or train.epochs
    for epoch in range(state["epoch"], epochs):
        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(train, epoch, epochs)
        desc = f"{stage.name} {epoch + 1}/{epochs}"
        loss = _epoch(net, optimizer, train_samples, stage, recipe, [train.seed, stage_index, epoch], options, desc)
        dice = validation_dice(net, validation, len(stage.labels) + 1, options.device, recipe.size_multiple,
                               air_value(recipe.preprocess.hu_window))
        score = float(np.nanmean(dice[1:])) if np.isfinite(dice[1:]).any() else 0.0
        row = {"epoch": epoch + 1, "lr": learning_rate(train, epoch, epochs), "train_loss": loss, "val_dice_mean": score}
        row.update({f"val_dice_{label_name(i)}": float(d) for i, d in zip(stage.labels, dice[1:])})
        row["seconds"] = time.perf_counter() - start
        state["history"].append(row)
        if score > state["best_score"]:
            state["best_score"], state["best_net"] = score, copy.deepcopy(net.state_dict())
        state.update(epoch=epoch + 1, net=net.state_dict(), optimizer=optimizer.state_dict())
        _save_checkpoint(state, folder)
        write_log(state["history"], folder)
        if options.progress:
            from tqdm import tqdm

            tqdm.write(f"{stage.name} epoch {epoch + 1}/{epochs}: loss {loss:.3f}, "
                       f"validation mean DSC {score:.3f}, {row['seconds']:.0f} s")
    return state["best_net"]
