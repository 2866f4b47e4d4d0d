"""A ConViT as ONNX graphs a browser runs (onnxruntime-web): the dial's probe scored on the student's machine.

The model is cut where a dial change can start, so that a change of GPSA block k re-runs graphs k onward only and
the stream entering block k is reused (as `petl_core.dial.DialProbe` does on the server):

    stem.onnx      images (B, C, S, S) float32                      -> stream (B, N, D)   patch embedding + position
    gpsa_<k>.onnx  stream (B, N, D), gates (H,) σ of GPSA block k    -> stream (B, N, D)   the GPSA block (and any
                                                                                           plain block before the next)
    head.onnx      stream (B, N, D)                                 -> logits (B, K)      class token, MHSA blocks,
                                                                                           norm, classifier

The gates are an input, never a constant folded into the graph; weights are float32 (what the web runtime's WASM
kernels run). `dial.json` beside the graphs says what they are and which weights file they were made from
(`weights_sha256`): they are offered only for that file (`petl_core.catalog.dial_graphs_manifest`).

>>> manifest = export_dial(zoo.load("convit_scenes").model, "assets/models/convit_scenes/browser")
>>> sessions = [onnxruntime.InferenceSession(folder / f) for f in manifest["graphs"]]

`python -m petl_core.export` (re)writes the graphs of the shipped ConViTs in `catalog.BROWSER_MODELS`:
`assets/models/<name>/browser/`.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from . import catalog
from .dial import gpsa_blocks, set_gates

__all__ = ["OPSET", "dial_graphs", "export_dial", "export_entry"]

OPSET = 17
"""ONNX opset of the graphs (LayerNormalization is one op from 17; onnxruntime-web's WASM backend runs 17)."""


class _Stem(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # timm's ConVit.forward_features before its blocks
        model = self.model
        x = model.patch_embed(images)
        if model.use_pos_embed:
            x = x + model.pos_embed
        return model.pos_drop(x)


class _Gated(nn.Module):
    """Blocks `first`..`last - 1`, the GPSA block `first` mixing at σ = the `gates` input (H,)."""

    def __init__(self, model: nn.Module, gpsa: int, first: int, last: int) -> None:
        super().__init__()
        self.model, self.gpsa, self.first, self.last = model, gpsa, first, last

    def forward(self, stream: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        setting: list = [None] * len(gpsa_blocks(self.model))
        setting[self.gpsa] = gates
        with set_gates(self.model, setting):
            for block in self.model.blocks[self.first:self.last]:
                stream = block(stream)
        return stream


class _Head(nn.Module):
    def __init__(self, model: nn.Module, first: int) -> None:
        super().__init__()
        self.model, self.first = model, first

    def forward(self, stream: torch.Tensor) -> torch.Tensor:  # the rest of timm's ConVit.forward_features, the head
        model = self.model
        last = len(model.blocks) - 1
        for u in range(self.first, last + 1):
            if u == model.local_up_to_layer and model.cls_token is not None:
                stream = torch.cat((model.cls_token.expand(stream.shape[0], -1, -1), stream), dim=1)
            if u == last and model.global_pool == "token" and u >= model.local_up_to_layer:
                stream = _class_token_out(model.blocks[u], stream)  # (the head reads nothing else)
            else:
                stream = model.blocks[u](stream)
        return model.forward_head(model.norm(stream))


def _class_token_out(block: nn.Module, stream: torch.Tensor) -> torch.Tensor:
    """timm's ConViT Block (MHSA) on `stream` (B, N, D) at its first token only, (B, 1, D): the last block's other
    tokens feed nothing the classifier reads, and skipping their attention rows and MLP is most of the block's
    work in the browser (the keys and values still come from every token)."""
    attention = block.attn
    B, N, C = stream.shape
    H = attention.num_heads
    q, k, v = attention.qkv(block.norm1(stream)).reshape(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4).unbind(0)
    weights = ((q[:, :, :1] @ k.transpose(-2, -1)) * attention.scale).softmax(dim=-1)  # (B, H, 1, N)
    out = attention.proj((weights @ v).transpose(1, 2).reshape(B, 1, C))
    first = stream[:, :1] + block.drop_path(out)
    return first + block.drop_path(block.mlp(block.norm2(first)))


def dial_graphs(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The graphs of `export_dial` as modules sharing `model`'s weights: (name, module), in the order they run."""
    gpsa = gpsa_blocks(model)
    if not gpsa:
        raise ValueError("this model has no GPSA blocks, so no gates to set")
    if gpsa[-1] >= model.local_up_to_layer or gpsa != list(range(gpsa[0], gpsa[-1] + 1)) or gpsa[0] != 0:
        raise ValueError(f"GPSA blocks {gpsa} are not ConViT's leading blocks before the class token")
    graphs: list[tuple[str, nn.Module]] = [("stem", _Stem(model))]
    graphs += [(f"gpsa_{k}", _Gated(model, k, i, i + 1)) for k, i in enumerate(gpsa)]
    return [*graphs, ("head", _Head(model, gpsa[-1] + 1))]


def export_dial(model: nn.Module, folder: str | Path, weights: str | Path | None = None) -> dict:
    """Write `model`'s dial graphs (see the module doc) and `dial.json` into `folder`; returns the manifest.
    `weights`: the file the model was loaded from, whose SHA-256 the manifest records."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    gpsa = gpsa_blocks(model)
    heads, dim = model.blocks[gpsa[0]].attn.num_heads, model.embed_dim
    channels, size = model.patch_embed.proj.in_channels, model.patch_embed.img_size[0]
    images = torch.zeros(2, channels, size, size)
    with torch.no_grad():
        stream = _Stem(model)(images)
    batch = {0: "batch"}
    files = []
    for name, graph in dial_graphs(model):
        if name == "stem":
            args, names, shapes = (images,), ["images"], {"images": batch, "stream_out": batch}
            outputs = ["stream_out"]
        elif name == "head":
            args, names, shapes = (stream,), ["stream"], {"stream": batch, "logits": batch}
            outputs = ["logits"]
        else:
            args = (stream, torch.full((heads,), 0.5))
            names, shapes, outputs = ["stream", "gates"], {"stream": batch, "stream_out": batch}, ["stream_out"]
        path = folder / f"{name}.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(graph, args, str(path), input_names=names, output_names=outputs, dynamic_axes=shapes,
                              opset_version=OPSET, dynamo=False)
        files.append(path.name)
    manifest = {
        "format": 1, "opset": OPSET, "graphs": files, "gpsa_blocks": len(files) - 2, "heads": heads,
        "tokens": stream.shape[1], "dim": dim, "image": [channels, size, size],
        "classes": model.num_classes,
        "trained_gates": [torch.sigmoid(model.blocks[i].attn.gating_param.detach()).tolist()
                          for i in gpsa],  # σ(λ) per GPSA block and head: a dial's null entries
        "weights_sha256": catalog.file_sha256(weights) if weights else None,
    }
    (folder / "dial.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def export_entry(name: str, root: str | Path | None = None) -> dict | None:
    """Write the graphs of the shipped entry `name` into its folder's `browser/`; None (nothing written, any old
    graphs removed) for a model without GPSA blocks."""
    import shutil

    from . import zoo

    directory = catalog._entry(name, root)
    shutil.rmtree(directory / catalog.DIAL_GRAPHS, ignore_errors=True)
    loaded = zoo.load(name, root=root)
    if not gpsa_blocks(loaded.model):
        return None
    return export_dial(loaded.model, directory / catalog.DIAL_GRAPHS, catalog.weights_file(directory))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the dial's ONNX graphs of shipped ConViTs.")
    parser.add_argument("names", nargs="*", help=f"entries (default: {', '.join(catalog.BROWSER_MODELS)})")
    args = parser.parse_args(argv)
    for name in args.names or catalog.BROWSER_MODELS:
        manifest = export_entry(name)
        print(name, "no GPSA blocks" if manifest is None else f"{len(manifest['graphs'])} graphs")


if __name__ == "__main__":
    main()
