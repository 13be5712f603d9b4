"""The explicit network registry: a model directory stores a name and keyword arguments."""

from __future__ import annotations

from typing import Any, Callable

from flareseg.errors import InputError
from flareseg.models.dmfnet import AttentionDMFNet
from flareseg.models.dual_unet import DualDecoderUNet
from flareseg.models.resunet import ResUNet3D
from flareseg.models.unet import PlainUNet

NETWORKS: dict[str, Callable[..., Any]] = {
    "attention_dmfnet": AttentionDMFNet,
    "dual_unet": DualDecoderUNet,
    "resunet3d": ResUNet3D,
    "unet": PlainUNet,
}


def build_network(name: str, kwargs: dict[str, Any], out_channels: int):
    """Instantiate a registered network with ``out_channels`` output classes (background included).

    Raises:
        InputError: Unknown name or bad keyword arguments.
    """
    if name not in NETWORKS:
        raise InputError(f"unknown network {name!r}; registered: {', '.join(sorted(NETWORKS))}")
    try:
        return NETWORKS[name](out_channels=out_channels, **kwargs)
    except (TypeError, ValueError) as error:
        raise InputError(f"network {name!r}: {error}") from None
