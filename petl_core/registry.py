"""The methods a training run can use and the model each trains: the from-scratch architectures (`ARCHITECTURES`,
sized by `architecture`), the transformer a run's configuration implies (`model_architecture`), and that model built
with its method's trainable parts (`build_model`). Its tables are torch-free (a model's card reads them); building
imports the models.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from safetensors import safe_open

from .checkpoint import load_checkpoint

if TYPE_CHECKING:
    from torch import nn

    from .train import TrainConfig

__all__ = ["ADAPTED", "ARCHITECTURES", "BASE_SIZE", "FAMILY", "HEADS", "METHODS", "PAD", "architecture",
           "architecture_record", "build_model", "model_architecture"]

BASE_SIZE, PAD = 28, 2  # by default images are brought to 28×28, then zero-padded to the 32×32 model input

METHODS = ("convit", "deit", "convpass", "convpass_attn", "linear", "finetune")
"""convit / deit train from scratch; the others adapt a trained backbone (a `deit`; linear and finetune a `convit`
too)."""
ADAPTED = METHODS[2:]
"""Methods that adapt a trained backbone: their cards name it."""
FAMILY = {"convit": "convit", "deit": "vit", "convpass": "convpass", "convpass_attn": "convpass", "linear": "vit",
          "finetune": "vit"}
"""The model family of each method: which views apply (GPSA for convit, bypasses for convpass)."""

# The shipped pair: equal size (9 heads of 16 channels, depth 6), 4-pixel patches; 32×32 input from the 28×28
# images (an 8×8 grid), or the dataset's own input size (`build_model`; 48×48 scenes: a 12×12 grid). ConViT keeps
# its paper ratio of GPSA to MHSA blocks (10 of 12 → 4 of 6 here would leave 2 MHSA blocks, as in the paper).
ARCHITECTURES: dict[str, tuple[str, dict]] = {
    "convit": ("convit_tiny", dict(img_size=32, patch_size=4, in_chans=1, num_heads=9, embed_dim=16, depth=6,
                                   local_up_to_layer=4)),
    "deit": ("deit_tiny_patch16_224", dict(img_size=32, patch_size=4, in_chans=1, num_heads=9, embed_dim=144,
                                           depth=6)),
}
HEADS = 9  # a 3×3 layout of GPSA's initial offsets


def architecture(method: str, img_size: int, head_dim: int = 16, patch_size: int = 4) -> tuple[str, dict]:
    """(timm name, kwargs) of the from-scratch `method` (convit, or deit for every other method) at `img_size`
    with `head_dim` channels per head (16: the Fashion-MNIST pair; narrower models train faster on a CPU) and
    `patch_size`-pixel patches (larger patches: fewer tokens, a coarser grid, a faster step)."""
    name, kwargs = ARCHITECTURES["convit" if method == "convit" else "deit"]
    width = {"embed_dim": head_dim} if name.startswith("convit") else {"embed_dim": head_dim * HEADS}
    return name, {**kwargs, **width, "img_size": img_size, "patch_size": patch_size}


def model_architecture(config: TrainConfig) -> tuple[str, dict]:
    """(timm name, kwargs) of the transformer a run trains, before its head is sized: from scratch, the method's
    at `head_dim` and `patch_size`; to adapt, the DeiT (or ConViT) whose width, patches (and classes) the backbone
    file holds."""
    from .data import dataset_spec

    img_size = dataset_spec(config.data).input_size
    if config.method in ("convit", "deit"):
        return architecture(config.method, img_size, config.head_dim, config.patch_size)
    with safe_open(config.backbone, framework="pt") as weights:
        backbone_classes, width = weights.get_slice("head.weight").get_shape()
        patch_size = weights.get_slice("patch_embed.proj.weight").get_shape()[-1]
        family = "convit" if "blocks.0.attn.gating_param" in weights.keys() else "deit"
    if family == "convit" and config.method.startswith("convpass"):
        raise ValueError(f"{config.method} adapts a DeiT; {config.backbone} holds a ConViT")
    name, kwargs = architecture(family, img_size, width // HEADS, patch_size)
    return name, {**kwargs, "num_classes": backbone_classes}


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The model a run trains, at its dataset's input size, with `requires_grad` set for its method."""
    from .convpass import add_convpass
    from .models import create_model

    name, kwargs = model_architecture(config)
    if config.method in ("convit", "deit"):
        return create_model(name, num_classes=num_classes, drop_path_rate=config.drop_path, **kwargs)
    model = create_model(name, drop_path_rate=config.drop_path, **kwargs)
    load_checkpoint(model, config.backbone)
    model.reset_classifier(num_classes)
    if config.method.startswith("convpass"):
        add_convpass(model, dim=config.convpass_dim, scale=config.convpass_scale,
                     where="both" if config.method == "convpass" else "attn")
    elif config.method == "linear":
        for pname, param in model.named_parameters():
            param.requires_grad = pname.startswith("head.")
    return model


def architecture_record(config: TrainConfig, num_classes: int) -> dict:
    """What a card needs to rebuild the trained model: timm name and kwargs with the run's classes."""
    name, kwargs = model_architecture(config)
    return {"timm_name": name, "kwargs": {**kwargs, "num_classes": num_classes}}
