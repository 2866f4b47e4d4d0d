"""Models from cards: a card's architecture built fresh (`initial_model`) or with a weights file (`build`), and
`Loaded`, what the zoo hands out."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from .cards import ModelCard
from .checkpoint import load_checkpoint
from .convpass import add_convpass
from .models import create_model

__all__ = ["Loaded", "build", "construct", "initial_model", "materialised"]


@dataclass
class Loaded:
    """A loaded model: `model` in eval mode, its `card`, and `preprocess(pil_image) -> (C, H, W) tensor`."""

    name: str
    source: str
    model: nn.Module
    card: ModelCard
    preprocess: Callable[[Image.Image], torch.Tensor]


def construct(card: ModelCard) -> nn.Module:
    """The card's architecture (with its Convpass bypasses), freshly initialised by timm and petl_core."""
    model = create_model(card.architecture["timm_name"], **card.architecture["kwargs"])
    if card.convpass is not None:
        add_convpass(model, **card.convpass)
    return model


def initial_model(card: ModelCard, seed: int = 0) -> nn.Module:
    """The model of `card` as training starts it: its architecture at initialisation (seeded), in eval mode.

    Measures like nonlocality need this reference: ConViT's GPSA starts local by construction, a ViT starts
    (near) uniform. Hub cards get timm's random init of the same architecture, never pretrained weights.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = construct(card)
    model.label_names = list(card.classes) or None
    return model.eval()


def materialised(model: nn.Module, make: Callable[[], nn.Module]) -> nn.Module:
    """`model`, as `make()` built it on the meta device, given CPU memory for a strict load to fill: parameters and
    persistent buffers uninitialised (a weights file holds them all), computed buffers computed. A model with a
    non-persistent buffer nothing can compute is built again the ordinary (slower) way, by `make()` on the CPU."""
    persistent = set(model.state_dict())
    unknown = [n for n, _ in model.named_buffers()
               if n not in persistent and not hasattr(model.get_submodule(n.rpartition(".")[0]),
                                                      "init_non_persistent_buffers")]
    if unknown:
        return make()
    model.to_empty(device="cpu")
    for module in model.modules():  # timm's convention for computed buffers (ConViT's rel_indices)
        if hasattr(module, "init_non_persistent_buffers"):
            module.init_non_persistent_buffers()
    return model


def build(card: ModelCard, weights: Path) -> nn.Module:
    """The card's architecture with the file's weights, loaded strictly (CheckpointError when they do not fit).

    Fast: the model is built on the meta device, so nothing is randomly initialised before the weights arrive.
    """
    with torch.device("meta"):
        model = construct(card)
    model = materialised(model, lambda: construct(card))
    load_checkpoint(model, weights)
    model.label_names = list(card.classes)
    return model.eval()
