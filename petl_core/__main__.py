"""Command line: `python -m petl_core analyze IMAGE --model NAME [--checkpoint FILE] --out DIR`.

Examples:
    python -m petl_core analyze assets/examples/chelsea.png --model convit_fmnist --out out/   (a shipped model)
    python -m petl_core analyze assets/examples/chelsea.png --model convit_tiny --out out/     (random init)
    python -m petl_core analyze cat.jpg --model deit_tiny_patch16_224 --checkpoint deit.safetensors --out out/
    python -m petl_core analyze cat.jpg --model vit_base_patch16_224 --adapter digits.safetensors --out out/
"""
from __future__ import annotations

import argparse
import ast
import inspect
import json
import sys
import textwrap
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import torch
from torch import nn

from . import train as train_module
from . import zoo
from .analysis import analyze
from .checkpoint import CheckpointError, load_checkpoint
from .convpass import load_convpass
from .data import DatasetMissingError
from .figures import attention_layer_figure, bypass_figure, conv_channels_figure, gates_figure, save_figure
from .images import ImageError, data_config, image_transform, load_image, to_display
from .metrics import bypass_maps
from .models import HubUnavailableError, create_model
from .query import parse_query
from .runtime import resolve_device, retain_freed_memory
from .train import TrainConfig


class CommandError(Exception):
    """A problem with the user's input, reported as one line."""


def _model_arg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m petl_core", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    a = commands.add_parser("analyze", help="attention maps, gates, nonlocality and bypasses of one image")
    a.add_argument("image", type=Path)
    a.add_argument("--model", default=zoo.DEFAULT_MODEL,
                   help=f"a shipped model ({', '.join(zoo.SHIPPED)}; default {zoo.DEFAULT_MODEL}) or a timm name "
                        "(convit_tiny)")
    a.add_argument("--checkpoint", type=Path, help="weights: .safetensors, or .pth/.pt read with weights_only")
    a.add_argument("--adapter", type=Path, help="Convpass adapter file written by petl_core.save_convpass")
    a.add_argument("--pretrained", action="store_true", help="load the timm hub weights (needs network)")
    a.add_argument("--model-arg", action="append", default=[], type=_model_arg, metavar="KEY=VALUE",
                   help="timm model argument, e.g. img_size=32 num_classes=10 (repeatable)")
    a.add_argument("--query", default="center",
                   help="whose attention to draw: 'center' patch (default), 'cls', or ROW,COL")
    a.add_argument("--linear", action="store_true", help="linear colour scale (default: log, as in the paper)")
    a.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    a.add_argument("--out", type=Path, required=True, help="output directory")

    t = commands.add_parser("train", help="train or adapt a model, recording gates and nonlocality over time",
                            description=train_module.__doc__.split("\n\n")[0])
    docs = _attribute_docs(TrainConfig)
    for f in fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = f"--{f.name.replace('_', '-')}"
        help_text = f"{docs.get(f.name, '')} (default: {f.default})".lstrip().replace("%", "%%")  # argparse formats
        if f.type == "bool":
            t.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
            continue
        kind = {"int": int, "float": float}.get(f.type.split(" | ")[0], str)
        choices = train_module.METHODS if f.name == "method" else None
        t.add_argument(flag, type=kind, default=f.default, choices=choices, help=help_text)
    return parser


def _attribute_docs(cls: type) -> dict[str, str]:
    """The docstring under each annotated field of a dataclass (PEP 257 attribute docstrings), first paragraph,
    on one line: what `--help` shows for the train command's options."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for field, doc in zip(body, body[1:], strict=False):
        if (isinstance(field, ast.AnnAssign) and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str)):
            docs[field.target.id] = " ".join(doc.value.value.split("\n\n")[0].split())
    return docs


def _device(name: str) -> torch.device:
    try:
        return resolve_device(name)
    except ValueError as e:
        raise CommandError(f"--device: {e}") from e


def _load_model(args: argparse.Namespace) -> tuple[nn.Module, Callable, dict, str]:
    """(model, preprocess, normalisation config, where its weights come from) for the analyze command."""
    if args.model in zoo.SHIPPED:
        if args.pretrained or args.model_arg:
            raise CommandError(f"{args.model} is a shipped model: it takes no --pretrained or --model-arg "
                               f"(--checkpoint: weights of the same recipe, e.g. a petl_core train run)")
        loaded = zoo.load(args.model, file=args.checkpoint)
        return loaded.model, loaded.preprocess, loaded.card.preprocessing, loaded.source
    try:
        model = create_model(args.model, pretrained=args.pretrained, **dict(args.model_arg))
    except TypeError as e:
        raise CommandError(f"bad model argument for {args.model}: {e}") from e
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    weights = "checkpoint" if args.checkpoint else "pretrained" if args.pretrained else "random"
    if weights == "random":
        print("note: no --checkpoint or --pretrained: random weights, predictions are meaningless",
              file=sys.stderr)
    return model, image_transform(model), data_config(model), weights


def run_analyze(args: argparse.Namespace) -> dict:
    device = _device(args.device)
    image = load_image(args.image)  # before building the model: a bad image fails fast
    model, preprocess, config, weights = _load_model(args)
    if args.adapter:
        try:
            load_convpass(model, args.adapter)
        except (OSError, ValueError) as e:
            raise CommandError(f"adapter {args.adapter.name}: {e}") from e
    model = model.to(device).eval()
    inputs = preprocess(image).unsqueeze(0).to(device)
    result = analyze(model, inputs)
    t = result.trace
    try:
        query = parse_query(args.query, t.grid)
    except ValueError as e:
        raise CommandError(str(e)) from None

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    display = to_display(inputs[0], config)
    written = [out / "input.png"]
    from PIL import Image
    Image.fromarray((display * 255).round().astype("uint8")).save(written[0])
    skipped = []
    for layer in range(len(t.attention)):
        if query.is_cls and t.num_prefix[layer] == 0:
            skipped.append(layer)  # ConViT's GPSA blocks run before the class token joins
            continue
        fig = attention_layer_figure(t, layer, display, query, log_scale=not args.linear)
        written.append(save_figure(fig, out / f"attention_block{layer:02d}.png"))
    if t.gated_blocks:
        written.append(save_figure(gates_figure(t.gate_matrix, t.gated_blocks), out / "gates.png"))
    maps = {i: bypass_maps(entry, t.grid, t.num_prefix[i]) for i, entry in enumerate(t.bypass) if entry}
    if maps:
        written.append(save_figure(bypass_figure(maps, display), out / "bypass_maps.png"))
        for i, block_maps in maps.items():
            for branch, branch_maps in block_maps.items():
                fig = conv_channels_figure(branch_maps.conv[0], f"block {i} {branch} bypass: 3×3 conv")
                written.append(save_figure(fig, out / f"bypass_conv_block{i:02d}_{branch}.png"))

    summary = {
        "model": args.model,
        "weights": weights,
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "adapter": str(args.adapter) if args.adapter else None,
        "image": str(args.image),
        "input_size": list(inputs.shape[1:]),
        "device": str(device),
        "query": query.text,
        "query_skipped_blocks": skipped,
        **result.summary(),
        "figures": [p.name for p in written],
    }
    (out / "analysis.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    retain_freed_memory()
    try:
        if args.command == "train":
            options = {k: v for k, v in vars(args).items() if k != "command"}
            history = train_module.train(TrainConfig(**options))
            if history["entries"]:  # only the first process records (under torchrun)
                last = history["entries"][-1]
                print(f"test accuracy {last['test_accuracy']:.4f} after {last['step']} steps; run in {args.out}")
            return 0
        summary = run_analyze(args)
    except (CommandError, ImageError, CheckpointError, HubUnavailableError, DatasetMissingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    top = summary["top5"][0]
    print(f"top-1: {top['label']} ({top['probability']:.1%}); wrote {len(summary['figures'])} figures and "
          f"analysis.json to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
