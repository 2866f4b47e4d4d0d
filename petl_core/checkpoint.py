"""Loading weights from files: safetensors, or PyTorch pickles read with weights_only=True (never arbitrary)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

__all__ = ["CheckpointError", "load_checkpoint", "read_state_dict"]


class CheckpointError(ValueError):
    """A weights file that is missing, unreadable or does not fit the model, with a message for the user."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.safetensors` file or of a `.pth`/`.pt`/`.bin` file (timm, DeiT and ConViT layouts)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path.name} is not a readable safetensors file: {e}") from e
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle, zip and runtime errors alike for a bad file
        raise CheckpointError(f"{path.name} is not a readable weights file (only tensors are loaded): "
                              f"{str(e).splitlines()[0]}") from e
    for wrapper in ("state_dict", "model", "model_ema"):  # training checkpoints nest the weights
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
            break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path.name} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in loaded.items()}


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a weights file into `model` strictly; explain in one sentence what does not fit."""
    state_dict = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
                  for k, v in own.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or mismatched:
        problems = []
        if mismatched:
            problems.append(f"{len(mismatched)} tensors of another shape (file vs model: {mismatched[0]})")
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise CheckpointError(f"{Path(path).name} does not fit this architecture: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)
    return model
