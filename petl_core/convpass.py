"""Convpass (Jie & Deng 2022, "Convolutional Bypasses Are Better Vision Transformer Adapters", arXiv 2207.07039).

A frozen timm `VisionTransformer` is adapted by small trainable bypasses placed in parallel to attention (and
the MLP): 1×1 down-projection to `dim` channels, QuickGELU, a 3×3 convolution on the patch grid (prefix tokens
such as the class token go through the same convolution as 1×1 maps, i.e. they meet only its centre tap),
QuickGELU, dropout, 1×1 up-projection. The up-projection starts at zero, so the adapted model first computes
exactly what the backbone computed. Parameter names follow the official code (`blocks.i.adapter_attn.
adapter_down.weight`, ...), so its checkpoints load.

>>> add_convpass(model, dim=8, scale=10.0)        # in place; freezes all but bypasses and head
>>> save_convpass(model, "digits.safetensors")    # adapter (+ head) weights and config only
>>> load_convpass(other_backbone, "digits.safetensors")
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from timm.layers import QuickGELU
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from .capture import active_recorder

__all__ = [
    "Convpass",
    "ConvpassBlock",
    "ConvpassConfig",
    "add_convpass",
    "convpass_state_dict",
    "load_convpass",
    "mark_only_convpass_as_trainable",
    "save_convpass",
]

_METADATA_KEY = "convpass_config"


@dataclass
class ConvpassConfig:
    """Settings of the bypasses injected by `add_convpass`."""

    dim: int = 8
    """Bottleneck width h (channels of the 3×3 convolution)."""
    scale: float = 10.0
    """s: the bypass output is multiplied by s before it is added to the residual stream."""
    where: str = "both"
    """'both': beside attention and beside the MLP (Convpass); 'attn': beside attention only (Convpass_attn)."""
    conv_init: str = "identity"
    """'identity': zero kernel with identity on the centre tap (a pass-through); 'xavier': Xavier-uniform."""
    dropout: float = 0.1
    """Dropout before the up-projection."""

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be a positive number of channels, got {self.dim}")
        if self.where not in ("both", "attn"):
            raise ValueError(f"where must be 'both' or 'attn', got {self.where!r}")
        if self.conv_init not in ("identity", "xavier"):
            raise ValueError(f"conv_init must be 'identity' or 'xavier', got {self.conv_init!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class Convpass(nn.Module):
    """One convolutional bypass: (B, N, D) tokens, prefix tokens first, to a (B, N, D) update (unscaled)."""

    def __init__(self, embed_dim: int, grid: tuple[int, int], num_prefix_tokens: int, config: ConvpassConfig):
        super().__init__()
        self.grid = tuple(grid)
        self.num_prefix_tokens = num_prefix_tokens
        self.adapter_down = nn.Linear(embed_dim, config.dim)
        self.adapter_conv = nn.Conv2d(config.dim, config.dim, kernel_size=3, padding=1)
        self.adapter_up = nn.Linear(config.dim, embed_dim)
        self.act = QuickGELU()
        self.dropout = nn.Dropout(config.dropout)

        nn.init.xavier_uniform_(self.adapter_down.weight)
        nn.init.zeros_(self.adapter_down.bias)
        if config.conv_init == "identity":
            nn.init.zeros_(self.adapter_conv.weight)
            with torch.no_grad():
                self.adapter_conv.weight[:, :, 1, 1] = torch.eye(config.dim)
        else:
            nn.init.xavier_uniform_(self.adapter_conv.weight)
        nn.init.zeros_(self.adapter_conv.bias)
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the update (B, N, D) and the 3×3 convolution's output on the grid (B, h, rows, cols)."""
        B, N, _ = z.shape
        rows, cols = self.grid
        p = self.num_prefix_tokens
        if not isinstance(z, torch.fx.Proxy) and N != p + rows * cols:  # an FX trace has no number to check
            raise ValueError(f"Convpass built for {p}+{rows}x{cols} tokens got {N}")
        u = self.act(self.adapter_down(z))  # (B, N, h)
        h = u.shape[-1]
        patches = u[:, p:].reshape(B, rows, cols, h).permute(0, 3, 1, 2)  # (B, h, rows, cols)
        conv = self.adapter_conv(patches)  # (B, h, rows, cols)
        # A 1×1 map under a zero-padded 3×3 kernel meets only the centre tap (and the bias).
        prefix = F.linear(u[:, :p], self.adapter_conv.weight[:, :, 1, 1], self.adapter_conv.bias)  # (B, p, h)
        mixed = torch.cat((prefix, conv.flatten(2).transpose(1, 2)), dim=1)  # (B, N, h)
        return self.adapter_up(self.dropout(self.act(mixed))), conv


@dataclass(frozen=True)
class BypassCapture:
    """One Convpass branch of one block, as `trace` captured it (N tokens, prefix first; D width, h bypass width)."""

    output: torch.Tensor
    """(B, N, D): the scaled bypass output s · Convpass(LN x), what the branch adds to the residual stream."""
    main: torch.Tensor
    """(B, N, D): the frozen branch beside it (attention or MLP output)."""
    conv: torch.Tensor
    """(B, h, rows, cols): the 3×3 convolution's output channels."""

    def to(self, device: torch.device | str) -> BypassCapture:
        return BypassCapture(self.output.to(device), self.main.to(device), self.conv.to(device))


class ConvpassBlock(nn.Module):
    """A timm ViT `Block` with bypasses beside attention (and MLP). Same child names as the block it adapts.

    x ← x + DP(ls1(Attn(LN1 x))) + s · DP(Convpass_attn(LN1 x));  x ← x + DP(ls2(MLP(LN2 x))) + s · DP(Convpass_mlp(LN2 x))

    Captures, per branch b in ('attn', 'mlp'): `b` the scaled bypass output (B, N, D), `b_main` the parallel
    main-branch output (B, N, D) and `b_conv` the 3×3 convolution output (B, h, rows, cols); `trace` hands them
    out as one `BypassCapture` per branch.
    """

    def __init__(self, block: Block, grid: tuple[int, int], num_prefix_tokens: int, config: ConvpassConfig):
        super().__init__()
        for name, child in block.named_children():
            self.add_module(name, child)
        dim = block.norm1.normalized_shape[0]
        self.scale = config.scale
        self.adapter_attn = Convpass(dim, grid, num_prefix_tokens, config)
        self.adapter_mlp = Convpass(dim, grid, num_prefix_tokens, config) if config.where == "both" else None

    def _branch(self, name: str, x: torch.Tensor, norm: nn.Module, main: nn.Module, layer_scale: nn.Module,
                drop_path: nn.Module, adapter: Convpass | None, **main_kwargs) -> torch.Tensor:
        z = norm(x)
        main_out = drop_path(layer_scale(main(z, **main_kwargs)))
        if adapter is None:
            return x + main_out
        update, conv = adapter(z)
        bypass_out = drop_path(update) * self.scale
        recorder = active_recorder()
        if recorder is not None:
            recorder.save(self, name, bypass_out)
            recorder.save(self, f"{name}_main", main_out)
            recorder.save(self, f"{name}_conv", conv)
        return x + main_out + bypass_out

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False):
        x = self._branch("attn", x, self.norm1, self.attn, self.ls1, self.drop_path1, self.adapter_attn,
                         attn_mask=attn_mask, is_causal=is_causal)
        return self._branch("mlp", x, self.norm2, self.mlp, self.ls2, self.drop_path2, self.adapter_mlp)


def mark_only_convpass_as_trainable(model: nn.Module) -> None:
    """Freeze every parameter except the bypasses' and the classifier head's."""
    for name, param in model.named_parameters():
        param.requires_grad = "adapter_" in name or name.startswith("head.")


def add_convpass(
        model: VisionTransformer,
        dim: int = 8,
        scale: float = 10.0,
        where: str = "both",
        conv_init: str = "identity",
        dropout: float = 0.1,
) -> VisionTransformer:
    """Inject Convpass bypasses into every block of a timm `VisionTransformer`, in place; returns the model.

    The patch grid and number of prefix tokens are read from the model. Afterwards only the bypasses and the
    head are trainable. See `ConvpassConfig` for the arguments.
    """
    config = ConvpassConfig(dim=dim, scale=scale, where=where, conv_init=conv_init, dropout=dropout)
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"Convpass adapts a timm VisionTransformer, not {type(model).__name__}")
    if any(isinstance(b, ConvpassBlock) for b in model.blocks):
        raise ValueError("the model already has Convpass bypasses")
    grid = tuple(model.patch_embed.grid_size)
    reference = next(model.parameters())
    for i, block in enumerate(model.blocks):
        if type(block) is not Block:
            raise ValueError(f"block {i} is a {type(block).__name__}; Convpass needs timm's plain ViT Block")
        adapted = ConvpassBlock(block, grid, model.num_prefix_tokens, config)
        model.blocks[i] = adapted.to(device=reference.device, dtype=reference.dtype)
    model.convpass_config = config
    mark_only_convpass_as_trainable(model)
    return model


def convpass_state_dict(model: nn.Module, include_head: bool = True) -> dict[str, torch.Tensor]:
    """The adapter (and head) tensors of an adapted model, under their full state-dict keys."""
    return {
        k: v for k, v in model.state_dict().items()
        if "adapter_" in k or (include_head and k.startswith("head."))
    }


def save_convpass(model: nn.Module, path: str | Path, include_head: bool = True) -> None:
    """Write the bypass (and head) weights and the `ConvpassConfig` to a safetensors file."""
    config = getattr(model, "convpass_config", None)
    if config is None:
        raise ValueError("the model has no Convpass bypasses (call add_convpass first)")
    tensors = {k: v.detach().contiguous().cpu() for k, v in convpass_state_dict(model, include_head).items()}
    save_file(tensors, str(path), metadata={_METADATA_KEY: json.dumps(asdict(config))})


def read_convpass_config(path: str | Path) -> ConvpassConfig:
    """The `ConvpassConfig` stored in an adapter file written by `save_convpass`."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if _METADATA_KEY not in metadata:
        raise ValueError(f"{Path(path).name} is not a Convpass adapter file (no {_METADATA_KEY} metadata)")
    return ConvpassConfig(**json.loads(metadata[_METADATA_KEY]))


def _expected_adapter_shapes(model: VisionTransformer, config: ConvpassConfig) -> dict[str, torch.Size]:
    """State-dict key -> shape of the bypasses `add_convpass(model, config)` would create (model untouched)."""
    width = model.embed_dim
    template = {k: v.shape for k, v in Convpass(width, (1, 1), 0, config).state_dict().items()}
    branches = ("attn", "mlp") if config.where == "both" else ("attn",)
    return {f"blocks.{i}.adapter_{b}.{k}": shape
            for i in range(len(model.blocks)) for b in branches for k, shape in template.items()}


def load_convpass(model: VisionTransformer, path: str | Path) -> VisionTransformer:
    """Load an adapter file onto `model`, injecting bypasses with the stored config if it has none yet.

    The head is replaced by the file's (resized to its number of classes) when the file carries one.
    Raises ValueError, leaving the model untouched, when the file does not fit the backbone.
    """
    config = read_convpass_config(path)
    tensors = load_file(str(path))
    existing = getattr(model, "convpass_config", None)
    if existing is not None and existing != config:
        raise ValueError(f"the model's bypasses ({existing}) differ from the file's ({config})")
    expected = _expected_adapter_shapes(model, config)
    adapter_keys = {k for k in tensors if "adapter_" in k}
    if adapter_keys != set(expected) or any(tensors[k].shape != expected[k] for k in expected):
        file_width = next((t.shape[1] for k, t in tensors.items() if k.endswith("adapter_down.weight")), None)
        file_depth = len({k.split(".")[1] for k in adapter_keys})
        raise ValueError(
            f"{Path(path).name} does not fit this backbone: it adapts {file_depth} blocks of width {file_width}, "
            f"the backbone has {len(model.blocks)} blocks of width {model.embed_dim}"
        )
    head = tensors.get("head.weight")
    if head is not None and head.shape[1] != model.embed_dim:
        raise ValueError(f"{Path(path).name} has a head for width {head.shape[1]}, the backbone's is {model.embed_dim}")
    if existing is None:
        add_convpass(model, **asdict(config))
    if head is not None and getattr(model.head, "weight", torch.empty(0)).shape != head.shape:
        model.reset_classifier(head.shape[0])
        mark_only_convpass_as_trainable(model)
    model.load_state_dict(tensors, strict=False)
    return model
