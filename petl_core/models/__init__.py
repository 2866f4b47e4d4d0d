"""Instrumented timm models: same modules, parameters and state-dict keys as timm, plus capture points.

>>> model = create_model("convit_tiny")          # timm's ConVit, GPSA/MHSA swapped for capturing versions
>>> timm_model.load_state_dict(model.state_dict())  # strict, both ways
"""
from __future__ import annotations

import timm
from timm.models._features import FeatureGetterNet  # timm's features_only wrapper of ViTs (not exported)
from timm.models.convit import ConVit
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..errors import HubUnavailableError
from .convit import GPSA, MHSA, instrument_convit
from .vit import Attention, instrument_vit

__all__ = ["GPSA", "MHSA", "Attention", "HubUnavailableError", "create_model", "instrument", "instrument_is_complete"]


def instrument(model: nn.Module) -> nn.Module:
    """Make a timm `ConVit` or `VisionTransformer` traceable, in place; returns the same model.

    A timm feature wrapper (`features_only=True`, a `FeatureGetterNet`) has the model it wraps instrumented.
    Idempotent. Raises ValueError for other model families and for blocks or attention types it does not know.
    """
    if isinstance(model, FeatureGetterNet):
        instrument(model.model)
        return model
    if isinstance(model, ConVit):
        return instrument_convit(model)
    if isinstance(model, VisionTransformer):
        return instrument_vit(model)
    raise ValueError(f"{type(model).__name__} is not supported: use a timm ConVit or VisionTransformer")


def create_model(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    """timm's `create_model(name, pretrained, **kwargs)`, instrumented for `petl_core.probe.trace`.

    Args:
        name: a timm model name, optionally with a weight tag (`convit_tiny`, `deit_tiny_patch16_224.fb_in1k`).
        pretrained: load the tag's weights through timm (the Hugging Face hub, or a local file given as
            `pretrained_cfg_overlay=dict(file=path)`).
        **kwargs: timm's model arguments (`img_size`, `num_classes`, `in_chans`, `num_heads`, ...).
    """
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ValueError(f"unknown model {name!r}") from e
        if pretrained:
            raise HubUnavailableError(f"could not load pretrained weights for {name!r}: {e}") from e
        raise
    except OSError as e:  # huggingface_hub's connection and cache-miss errors are OSErrors
        if not pretrained:
            raise
        raise HubUnavailableError(
            f"could not download pretrained weights for {name!r} (no network?): pass a local file with "
            f"pretrained_cfg_overlay=dict(file=PATH) instead"
        ) from e
    return instrument(model)


def instrument_is_complete(model: nn.Module) -> bool:
    """Whether every block's attention of `model` is a capturing module."""
    blocks = getattr(model, "blocks", None)
    return blocks is not None and all(isinstance(b.attn, (Attention, GPSA, MHSA)) for b in blocks)
