"""Loading weights from files: safetensors, or PyTorch zip archives read with weights_only=True (never arbitrary
pickles).

A weights file may come from anyone (the app's "own weights" upload), so `check_weights_file` vets it before a
byte is decompressed or unpickled: its size is bounded, a PyTorch archive must hold its members stored (as
`torch.save` writes them: a deflated member is a zip bomb's tool) with declared sizes that fit in the file, and a
safetensors header is bounded. Loaded tensors must be finite. Vetting is torch-free (torch is imported where tensors
are read), so a server can refuse a file before it loads torch.

A file's tensor names and shapes (`tensor_shapes`, read without a byte of tensor data) must then fit the model exactly
(`misfit`) before any library touches its tensors: libraries "adapt" tensors of another shape (timm's pretrained
loader resamples a patch embedding of any size through an identity matrix of (S²)² floats for an S×S kernel).
"""
from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CheckpointError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["MAX_HEADER_BYTES", "MAX_WEIGHTS_BYTES", "CheckpointError", "check_finite", "check_weights_file",
           "load_checkpoint", "misfit", "read_state_dict", "tensor_shapes"]

MAX_WEIGHTS_BYTES = 350 * 2**20
"""Largest weights file read (350 MiB: timm's ViT-B/16 files are 330 MB)."""
MAX_HEADER_BYTES = 16 * 2**20
"""Largest safetensors JSON header (a ViT-B header is about 20 kB)."""
PYTORCH_SUFFIXES = (".pth", ".pt", ".bin")


def check_weights_file(path: str | Path, max_bytes: int = MAX_WEIGHTS_BYTES) -> Path:
    """Vet a weights file before anything reads it as weights; returns its path.

    Raises:
        CheckpointError: missing, not a regular file, larger than `max_bytes`, an empty file, a safetensors header
            over MAX_HEADER_BYTES, a PyTorch file that is not a zip archive (the legacy format) or whose members
            are compressed or declare more bytes than the file holds.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path.name}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path.name} is empty")
    if size > max_bytes:
        raise CheckpointError(f"{path.name} is {size / 2**20:.0f} MiB; the limit is {max_bytes / 2**20:.0f} MiB")
    if path.suffix == ".safetensors":
        with path.open("rb") as f:
            prefix = f.read(8)
        header = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else None
        if header is None or header > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{path.name} is not a readable safetensors file: its header is missing, "
                                  f"larger than the file or over {MAX_HEADER_BYTES // 2**20} MiB")
        return path
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path.name} is not a PyTorch weights archive (torch.save's zip format); files in "
                              f"the legacy format must be saved again with a recent torch.save")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path.name} is not a readable PyTorch weights archive") from e
    if any(m.compress_type != zipfile.ZIP_STORED for m in members):
        raise CheckpointError(f"{path.name} holds compressed members, which torch.save never writes: refused "
                              f"unread")
    if sum(m.file_size for m in members) > size:
        raise CheckpointError(f"{path.name} declares more data than the file holds: refused unread")
    return path


def check_finite(tensors: dict[str, torch.Tensor], name: str) -> None:
    """Raise CheckpointError when any floating-point tensor holds NaN or ±Inf, naming how many and the first."""
    import torch

    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{name} holds NaN or infinite values in {len(bad)} of {len(tensors)} tensors "
                              f"(first: {bad[0]}); a model cannot be analysed with them")


def _torch_load(path: Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of a vetted PyTorch archive: training wrappers (state_dict, model, model_ema) and DataParallel's
    "module." prefix removed. With `mmap`, tensors map the file and no data is read until used."""
    import torch

    # not timm's load_state_dict: it also unpickles argparse.Namespace, and prefers EMA weights to the model's
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:  # torch's own text advises weights_only=False: never for a stranger's file
        raise CheckpointError(f"{path.name} holds Python objects other than tensors, which are never loaded here "
                              f"(only plain state dicts of tensors)") from e
    except Exception as e:  # torch raises zip, runtime and EOF errors alike for a damaged file
        raise CheckpointError(f"{path.name} is not a readable PyTorch weights file (damaged or truncated)") from e
    for wrapper in ("state_dict", "model", "model_ema"):  # training checkpoints nest the weights
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
            break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path.name} does not hold a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in loaded.items()}


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes from a vetted safetensors file's JSON header: {name: {"dtype", "shape", "data_offsets"}} and
    an optional "__metadata__" (text to text), after its 8-byte little-endian length."""
    unreadable = f"{path.name} is not a readable safetensors file: its header is not a table of tensors"
    with path.open("rb") as f:
        length = struct.unpack("<Q", f.read(8))[0]  # check_weights_file bounded it by the file and MAX_HEADER_BYTES
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, numbers over int's digit limit, deep nesting
        raise CheckpointError(unreadable) from e
    if not isinstance(header, dict):
        raise CheckpointError(unreadable)
    shapes = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
            raise CheckpointError(unreadable)
        shapes[name] = tuple(shape)
    return shapes


def tensor_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """{name: shape} of every tensor of a weights file (as `read_state_dict` would name them), vetted first
    (`check_weights_file`), without reading tensor data: a safetensors file's JSON header, or a PyTorch archive
    unpickled with its tensors memory-mapped, never touched. E.g. {"patch_embed.proj.weight": (192, 3, 16, 16)}."""
    path = check_weights_file(path)
    if path.suffix == ".safetensors":
        return _safetensors_shapes(path)
    return {k: tuple(v.shape) for k, v in _torch_load(path, mmap=True).items()}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.safetensors` file or of a `.pth`/`.pt`/`.bin` file (timm, DeiT and ConViT layouts),
    vetted first (`check_weights_file`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = check_weights_file(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path.name} is not a readable safetensors file") from e
    return _torch_load(path)


def misfit(model: nn.Module, path: str | Path) -> str | None:
    """How the tensors of the weights file at `path` differ from `model`'s state dict (any device, meta included),
    in one clause naming the first offender of each kind, e.g. "1 tensors of another shape (file vs model:
    patch_embed.proj.weight (1, 1, 150, 150) vs (192, 3, 16, 16)); 151 missing (e.g. cls_token)"; None when names
    and shapes are exactly the model's. Reads names and shapes only (`tensor_shapes`), never tensor data."""
    found = tensor_shapes(path)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in own if k not in found]
    unexpected = [k for k in found if k not in own]
    mismatched = [f"{k} {found[k]} vs {shape}" for k, shape in own.items() if k in found and found[k] != shape]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} tensors of another shape (file vs model: {mismatched[0][:200]})")
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0][:80]})")
    return "; ".join(problems) or None


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a weights file into `model` strictly; explain in one sentence what does not fit.

    The file's names and shapes are checked first (`misfit`), so a file that does not fit is refused before a byte
    of its tensor data is read."""
    path = check_weights_file(path)
    problem = misfit(model, path)
    if problem:
        raise CheckpointError(f"{path.name} does not fit this architecture: {problem}")
    state_dict = read_state_dict(path)
    check_finite(state_dict, path.name)
    model.load_state_dict(state_dict, strict=True)
    return model
