"""The models the explorer offers: shipped (trained here, in `assets/models/`), hub (timm weights) and local files.

>>> from petl_core import zoo
>>> [(m.name, m.source, m.available) for m in zoo.list_models()]
>>> loaded = zoo.load("convit_fmnist")          # .model (eval mode), .card (dict), .preprocess(pil) -> tensor
>>> logits = loaded.model(loaded.preprocess(image)[None])
>>> zoo.load("deit_tiny_patch16_224.fb_in1k", file="deit_tiny.safetensors")   # hub entry, weights from a file

Shipped entry = a folder `<root>/<name>/` holding `model.safetensors` (the FULL state dict: for Convpass the
backbone, the bypasses and the head), `card.json` (format below; `read_card` is the one place that reads it) and
the run's `history.json`. The root is `root=` if given, else the `PETL_ASSETS` environment variable, else
`ASSETS`. `write_entry(run_dir, name, title)` makes one from a finished `petl_core.train` run.

Card (a JSON dict)::

    {"name": "convit_fmnist", "title": "ConViT (9 heads, depth 6) trained on Fashion-MNIST",
     "method": "convit",                      # TrainConfig.method: convit, deit, convpass, convpass_attn, ...
     "architecture": {"timm_name": "convit_tiny", "kwargs": {...ARCHITECTURES kwargs..., "num_classes": 10}},
     "backbone": "deit_fmnist",               # adapted methods only: what was adapted
     "convpass": {"dim": 8, "scale": 10.0, "where": "both", "conv_init": "identity", "dropout": 0.1},  # Convpass only
     "classes": ["T-shirt/top", ...],
     "preprocessing": {"mean": 0.286, "std": 0.353, "base_size": 28, "pad": 2, "in_chans": 1},
     "accuracy": {"test": 0.87, "test_images": 10000, "step": 3000},
     "parameters": {"total": 1234, "trainable": 1234},
     "data": "...", "recipe": {...}, "made_with": "python -m petl_core train ...", "wall_time_s": 123.4,
     "hardware": "...", "software": {"python": ..., "torch": ..., "timm": ...}}

Cards of hub and local-file models (built at load time) share the keys name, title, source, method,
architecture, classes, preprocessing (timm's data config there) and accuracy (`{"test": None, "note": "not
measured here"}`).

Nothing is cached: every `load` builds a fresh model, so callers may change it (add_convpass, reset_classifier).
A shipped model loads in a fraction of a second: it is built on the meta device (no random initialisation), then
its weights are loaded strictly. `list_models` never lists local files (the user names them at load time);
`load_local` loads one, as source 'local'.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image
from timm.models import get_pretrained_cfg
from torch import nn

from .analysis import class_names
from .checkpoint import CheckpointError, check_finite, check_weights_file, load_checkpoint, read_state_dict
from .convpass import ConvpassConfig, add_convpass, load_convpass, save_convpass
from .data import DatasetMissingError, dataset_spec
from .images import data_config, image_transform
from .models import HubUnavailableError, create_model
from .preprocess import BASE_SIZE, PAD, prepare
from .registry import architecture as architecture_of
from .train import TrainConfig

__all__ = [
    "ASSETS",
    "DEFAULT_MODEL",
    "HUB",
    "SHIPPED",
    "Loaded",
    "ZooEntry",
    "card_from_history",
    "dimensions",
    "hub_status",
    "initial_model",
    "list_models",
    "load",
    "load_local",
    "read_card",
    "read_history",
    "shipped_pair",
    "snapshot_steps",
    "write_entry",
]

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "models"
"""Default home of the shipped entries (overridden by `root=` arguments or the PETL_ASSETS variable)."""

SHIPPED = {"convit_scenes_gpsa50": "convit", "convit_scenes": "convit", "deit_scenes": "vit",
           "convpass_digit_scenes": "convpass", "convit_fmnist": "convit", "deit_fmnist": "vit",
           "convpass_digits": "convpass"}
"""The entries this project ships (name: family), the scenes task first, then the simpler Fashion-MNIST one; listed
even while they are missing (as unavailable)."""
DEFAULT_MODEL = "convit_scenes_gpsa50"
"""The model the app and the CLI open with."""

HUB: dict[str, dict] = {
    "convit_tiny.fb_in1k": dict(title="ConViT-Ti, ImageNet-1k (Facebook)", family="convit", data="ImageNet-1k"),
    "convit_small.fb_in1k": dict(title="ConViT-S, ImageNet-1k (Facebook)", family="convit", data="ImageNet-1k"),
    "deit_tiny_patch16_224.fb_in1k": dict(title="DeiT-Ti/16, ImageNet-1k (Facebook)", family="vit",
                                          data="ImageNet-1k"),
    "deit_small_patch16_224.fb_in1k": dict(title="DeiT-S/16, ImageNet-1k (Facebook)", family="vit",
                                           data="ImageNet-1k"),
    "vit_base_patch16_224.orig_in21k": dict(title="ViT-B/16, ImageNet-21k (original, no classifier head): "
                                                  "a backbone for Convpass", family="vit", data="ImageNet-21k",
                                            convpass_ready=True),
}
"""timm weights offered from the Hugging Face hub (or from a local copy of their file)."""

_FAMILY = {"convit": "convit", "deit": "vit", "convpass": "convpass", "convpass_attn": "convpass", "linear": "vit",
           "finetune": "vit"}
_ADAPTED = ("convpass", "convpass_attn", "linear", "finetune")
ADAPTERS = "adapters.safetensors"
"""An adapted entry's own tensors (bypasses and head) when it refers to its backbone entry instead of a copy."""
_HUB_TIMEOUT_S = 2.0


@dataclass
class ZooEntry:
    """One model the app can offer."""

    name: str
    title: str
    source: str
    """'shipped' or 'hub' ('local' is the source of what `load_local` returns)."""
    family: str
    """'convit', 'vit' or 'convpass'."""
    available: bool
    reason: str = ""
    """Why it is unavailable now (empty when available)."""
    convpass_ready: bool = False
    """A plain ViT backbone meant to be adapted with `add_convpass`."""


@dataclass
class Loaded:
    """A loaded model: `model` in eval mode, its `card`, and `preprocess(pil_image) -> (C, H, W) tensor`."""

    name: str
    source: str
    model: nn.Module
    card: dict
    preprocess: Callable[[Image.Image], torch.Tensor]


def _root(root: str | Path | None) -> Path:
    return Path(root or os.environ.get("PETL_ASSETS") or ASSETS)


def _entry(name: str, root: str | Path | None) -> Path:
    """The folder of entry `name` under the root; a name that is not a plain folder name is an unknown model (never
    a way out of the root)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name) or ".." in name:
        raise ValueError(f"unknown model {str(name)[:60]!r}")
    return _root(root) / name


# --------------------------------------------------------------------------------------------------- cards
def read_card(directory: str | Path) -> dict:
    """The card of an entry folder, checked for the fields loading needs. Raises CheckpointError."""
    path = Path(directory) / "card.json"
    if not path.is_file():
        raise CheckpointError(f"{Path(directory).name} has no card.json (looked in {path.parent})")
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not readable JSON: {e}") from e
    required = ["name", "title", "method", "architecture", "classes", "preprocessing", "accuracy"]
    if card.get("method") in _ADAPTED:
        required.append("backbone")
    if str(card.get("method", "")).startswith("convpass"):
        required.append("convpass")
    missing = [k for k in required if k not in card]
    missing += [f"architecture.{k}" for k in ("timm_name", "kwargs") if k not in card.get("architecture", {})]
    missing += [f"preprocessing.{k}" for k in ("mean", "std") if k not in card.get("preprocessing", {})]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}")
    pre = card["preprocessing"]
    base_size, pad = pre.get("base_size", BASE_SIZE), pre.get("pad", PAD)
    img_size = card["architecture"]["kwargs"].get("img_size", BASE_SIZE + 2 * PAD)
    if not (isinstance(base_size, int) and isinstance(pad, int) and base_size > 0 and pad >= 0
            and base_size + 2 * pad == img_size):
        raise CheckpointError(f"{path} asks for {base_size}-pixel images padded by {pad}, which does not make the "
                              f"architecture's {img_size}-pixel input")
    return card


def read_history(name: str, root: str | Path | None = None) -> dict | None:
    """The training history (history.json) of the entry `name`, or None when it has none (hub models)."""
    path = _entry(name, root) / "history.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _command(config: dict, processes: int) -> str:
    """The command line that reproduces a run: the method and the options that differ from its defaults."""
    defaults = asdict(TrainConfig(method=config["method"], backbone=config.get("backbone")))
    launcher = f"torchrun --nproc_per_node {processes} -m" if processes > 1 else "python -m"
    options = []
    for k, v in config.items():
        if k == "method" or (k != "extra" and k in defaults and v != defaults[k] and v is not None):
            flag = f"--{'' if v or not isinstance(v, bool) else 'no-'}{k.replace('_', '-')}"
            options.append(flag if isinstance(v, bool) else f"{flag} {shlex.quote(str(v))}")
    return " ".join([launcher, "petl_core train", *options])


def _describe(data: str) -> str:
    """A dataset's description (what its images show), or its name when it declares none."""
    try:
        return dataset_spec(data).description or data
    except DatasetMissingError:
        return data


def card_from_history(history: dict, name: str, title: str, *, backbone: str | None = None, data: str | None = None,
                      made_with: str | None = None, hardware: str | None = None) -> dict:
    """The card of a finished `petl_core.train` run, from its history.json.

    Args:
        backbone: the zoo name of the adapted backbone (default: the path the run was given).
        data: a sentence on the training data (default: dataset name and sizes).
        made_with: the command that made it (default: rebuilt from the run's configuration).
        hardware: where it ran (default: from the run's recorded environment).
    """
    config, env, run_data = history["config"], history["environment"], history["data"]
    if not history["entries"] or history["entries"][-1]["step"] != history["steps"]:
        done = history["entries"][-1]["step"] if history["entries"] else 0
        raise ValueError(f"the run stopped at step {done} of {history['steps']}: finish it before making a card")
    last = history["entries"][-1]
    method = config["method"]
    classes = list(run_data["classes"])
    subset = f", {config['shots']} per class" if config.get("shots") else (
        f", {config['fraction']:.0%} of the training set" if config.get("fraction", 1.0) < 1.0 else "")
    base_size, pad = run_data.get("base_size", BASE_SIZE), run_data.get("pad", PAD)  # older runs: 28 + 2·2
    # Older runs did not record their architecture: the 16-channel pair of ARCHITECTURES
    timm_name, kwargs = architecture_of(method, base_size + 2 * pad)
    architecture = history.get("architecture") or {"timm_name": timm_name,
                                                   "kwargs": {**kwargs, "num_classes": len(classes)}}
    card = {
        "name": name,
        "title": title,
        "method": method,
        "architecture": architecture,
        "classes": classes,
        "preprocessing": {**run_data["normalisation"], "base_size": base_size, "pad": pad,
                          "in_chans": architecture["kwargs"]["in_chans"]},
        "accuracy": {"test": last["test_accuracy"], "test_images": run_data["test_images"], "step": last["step"]},
        "parameters": dict(history["parameters"]),
        "data": data or (f"{_describe(config['data'])}: {run_data['train_images']:,} training images{subset}, "
                         f"{run_data['test_images']:,} test images"),
        "augmentation": history.get("augmentation"),
        "recipe": {**{k: v for k, v in config.items() if k not in ("out", "data_root", "device", "backbone")},
                   "steps": history["steps"], "epochs": history["steps"] / history["steps_per_epoch"]},
        "made_with": made_with or _command(config, env.get("processes", 1)),
        "wall_time_s": last["wall_time"],
        "hardware": hardware or (f"{env.get('processes', 1)} × {env.get('gpu') or 'CPU process'} on "
                                 f"{env.get('cpu_count')} CPU cores ({env.get('platform')})"),
        "software": {k: env.get(k) for k in ("python", "torch", "timm")},
    }
    if method in _ADAPTED:
        card["backbone"] = backbone or config["backbone"]
    if method.startswith("convpass"):
        where = "both" if method == "convpass" else "attn"
        card["convpass"] = asdict(ConvpassConfig(dim=config["convpass_dim"], scale=config["convpass_scale"],
                                                 where=where))
    return card


def write_entry(run_dir: str | Path, name: str, title: str, root: str | Path | None = None,
                **card_options) -> Path:
    """Ship a finished run: its weights and history.json to `<root>/<name>/`, with card.json (and its snapshots).

    A Convpass run whose `backbone` names an entry under the same root ships only its bypasses and head
    (`adapters.safetensors`, a `save_convpass` file): loading rebuilds the backbone from that entry. Its frozen
    weights must equal the entry's, else CheckpointError. Every other run ships its whole model.safetensors.
    `card_options` go to `card_from_history` (backbone, data, made_with, hardware). Returns the entry folder.
    """
    run_dir = Path(run_dir)
    for file in ("model.safetensors", "history.json"):
        if not (run_dir / file).is_file():
            raise CheckpointError(f"{run_dir} has no {file}: is it a finished petl_core.train run?")
    history = json.loads((run_dir / "history.json").read_text())
    card = card_from_history(history, name, title, **card_options)
    try:
        backbone = _entry(card["backbone"], root) if "convpass" in card else None
    except ValueError:  # a file path, not an entry name: nothing to refer to
        backbone = None
    adapted = None
    if backbone is not None and (backbone / "card.json").is_file():
        adapted = _build(card, run_dir / "model.safetensors")
        frozen = read_state_dict(backbone / "model.safetensors")
        own = adapted.state_dict()
        differ = [k for k, v in frozen.items() if not k.startswith("head.") and not torch.equal(own[k], v)]
        if differ:
            raise CheckpointError(f"{run_dir} did not adapt {card['backbone']}'s weights ({differ[0]} differs): "
                                  "ship it whole, without backbone=")
    entry = _entry(name, root)
    entry.mkdir(parents=True, exist_ok=True)
    for stale in ("model.safetensors", ADAPTERS):
        (entry / stale).unlink(missing_ok=True)
    if adapted is None:
        shutil.copyfile(run_dir / "model.safetensors", entry / "model.safetensors")
    else:
        save_convpass(adapted, entry / ADAPTERS)
    shutil.copyfile(run_dir / "history.json", entry / "history.json")
    if (run_dir / "snapshots").is_dir():
        shutil.copytree(run_dir / "snapshots", entry / "snapshots", dirs_exist_ok=True)
    (entry / "card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")
    read_card(entry)
    return entry


# --------------------------------------------------------------------------------------------------- building
def _construct(card: dict) -> nn.Module:
    """The card's architecture (with its Convpass bypasses), freshly initialised by timm and petl_core."""
    arch = card["architecture"]
    model = create_model(arch["timm_name"], **arch["kwargs"])
    if "convpass" in card:
        add_convpass(model, **card["convpass"])
    return model


def initial_model(card: dict, seed: int = 0) -> nn.Module:
    """The model of `card` as training starts it: its architecture at initialisation (seeded), in eval mode.

    Measures like nonlocality need this reference: ConViT's GPSA starts local by construction, a ViT starts
    (near) uniform. Hub cards get timm's random init of the same architecture, never pretrained weights.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _construct(card)
    model.label_names = list(card["classes"]) or None
    return model.eval()


def _build(card: dict, weights: Path) -> nn.Module:
    """The card's architecture with the file's weights, loaded strictly (CheckpointError when they do not fit).

    Fast: the model is built on the meta device, so nothing is randomly initialised before the weights arrive.
    """
    with torch.device("meta"):
        model = _construct(card)
    persistent = set(model.state_dict())
    unknown = [n for n, _ in model.named_buffers()
               if n not in persistent and not hasattr(model.get_submodule(n.rpartition(".")[0]),
                                                      "init_non_persistent_buffers")]
    if unknown:  # a buffer neither in the file nor recomputable: build the ordinary (slower) way
        model = _construct(card)
    else:
        model.to_empty(device="cpu")
        for module in model.modules():  # timm's convention for computed buffers (ConViT's rel_indices)
            if hasattr(module, "init_non_persistent_buffers"):
                module.init_non_persistent_buffers()
    load_checkpoint(model, weights)
    model.label_names = list(card["classes"])
    return model.eval()


def _grayscale_square(image: Image.Image, base_size: int) -> torch.Tensor:
    """(1, 1, s, s) uint8: the image in grayscale, centre-cropped to its largest square (nothing is squashed)."""
    gray = image.convert("L")
    width, height = gray.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = gray.crop((left, top, left + side, top + side))
    if side > 32 * base_size:  # memory guard for huge photos: box-average by an integer factor first
        square = square.reduce(side // (16 * base_size))
    return torch.from_numpy(np.array(square, dtype=np.uint8))[None, None]


def _card_preprocess(card: dict) -> Callable[[Image.Image], torch.Tensor]:
    """The evaluation path of `petl_core.train`: grayscale, centre square, then `prepare` (resize to the card's
    base size, 28 or 48, pad, norm).

    The resize is `prepare`'s own (bilinear, antialiased), so that dataset images of any size (28×28
    Fashion-MNIST, 8×8 digits, 48×48 scenes) give exactly the tensor the model was evaluated on; an image of the
    base size is not resized.
    """
    pre = card["preprocessing"]
    in_chans = pre.get("in_chans", card["architecture"]["kwargs"].get("in_chans", 1))
    mean, std = float(pre["mean"]), float(pre["std"])
    base_size, pad = pre.get("base_size", BASE_SIZE), pre.get("pad", PAD)

    def preprocess(image: Image.Image) -> torch.Tensor:
        return prepare(_grayscale_square(image, base_size), in_chans, mean, std, train=False, base_size=base_size,
                       pad=pad)[0]

    return preprocess


def _weights(directory: Path) -> Path:
    """The weights file of an entry folder: model.safetensors, or the adapters of one that refers to its backbone."""
    return directory / ADAPTERS if (directory / ADAPTERS).is_file() else directory / "model.safetensors"


def _load_entry(directory: Path, name: str, source: str) -> Loaded:
    card = {**read_card(directory), "source": source}
    weights = _weights(directory)
    if weights.name != ADAPTERS:
        return Loaded(name, source, _build(card, weights), card, _card_preprocess(card))
    backbone_dir = _entry(card["backbone"], directory.parent)
    if not (backbone_dir / "model.safetensors").is_file():
        raise CheckpointError(f"{name} adapts {card['backbone']}, whose weights are missing ({backbone_dir})")
    # The backbone as training built it: this entry's architecture with the backbone's head, then its weights
    backbone_card, arch = read_card(backbone_dir), card["architecture"]
    classes = backbone_card["architecture"]["kwargs"]["num_classes"]
    backbone = {**backbone_card, "architecture": {**arch, "kwargs": {**arch["kwargs"], "num_classes": classes}}}
    model = _build(backbone, backbone_dir / "model.safetensors")
    try:
        check_finite(read_state_dict(weights), weights.name)
        load_convpass(model, check_weights_file(weights))
    except ValueError as e:
        raise CheckpointError(f"{name}: {e}") from e
    if asdict(model.convpass_config) != card["convpass"]:
        raise CheckpointError(f"{name}: {weights.name} holds bypasses {model.convpass_config}, the card says "
                              f"{card['convpass']}")
    model.label_names = list(card["classes"])
    return Loaded(name, source, model.eval(), card, _card_preprocess(card))


# --------------------------------------------------------------------------------------------------- the hub
def _offline_env() -> bool:
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _cached_weights(name: str) -> str | None:
    """The path of `name`'s weights in the Hugging Face cache, if they were downloaded before."""
    from huggingface_hub import try_to_load_from_cache

    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        return None
    filenames = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
    for filename in filenames:
        path = try_to_load_from_cache(cfg.hf_hub_id, filename)
        if isinstance(path, str):
            return path
    return None


def _hub_reachable(timeout: float = _HUB_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub (or the HTTPS proxy) opens within `timeout` seconds, DNS included."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_url = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname, proxy_url.port or 80
    opened: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=connect, daemon=True)  # a hanging DNS lookup cannot hold us past `timeout`
    probe.start()
    probe.join(timeout)
    return bool(opened)


def hub_status(name: str, reachable: bool | None = None) -> tuple[bool, str]:
    """(available, reason) for a hub entry: its weights are cached, or the hub can be reached now."""
    if _cached_weights(name):
        return True, ""
    if _offline_env():
        return False, (f"{name} needs its weights from the Hugging Face hub, which is switched off here "
                       f"(HF_HUB_OFFLINE is set); pass a local weights file instead.")
    if reachable is None:
        reachable = _hub_reachable()
    if not reachable:
        return False, (f"{name} needs its weights from the Hugging Face hub, which cannot be reached from here; "
                       f"pass a local weights file instead.")
    return True, ""


def _why_not(name: str, weights: Path, timm_kwargs: dict, error: BaseException) -> str:
    """One clause on why timm could not load `weights` as `name`: the file's tensors against the architecture's."""
    with torch.device("meta"):  # no memory, no init: only names and shapes matter
        skeleton = create_model(name, **timm_kwargs)
    try:
        load_checkpoint(skeleton, weights)
    except CheckpointError as e:
        return str(e).split(": ", 1)[-1]
    return " ".join(str(error).split())[:300] or type(error).__name__


def _load_hub(name: str, file: str | Path | None, timm_kwargs: dict) -> Loaded:
    info = HUB[name]
    if file is not None:
        weights = check_weights_file(file)  # vetted before timm unzips or unpickles a byte of it
    else:
        cached = _cached_weights(name)
        if cached is None:
            available, reason = hub_status(name)
            if not available:
                raise HubUnavailableError(reason)
        weights = Path(cached) if cached else None  # cached: read the file directly, no network at all
    if weights is None:
        model = create_model(name, pretrained=True, **timm_kwargs)
    else:
        try:
            model = create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)),
                                 **timm_kwargs)
        except Exception as e:  # timm and torch raise many kinds for a file that is not these weights
            cause = e.__cause__ if isinstance(e, HubUnavailableError) and e.__cause__ else e
            why = _why_not(name, weights, timm_kwargs, cause)
            raise CheckpointError(f"{weights.name} does not hold weights of {name}: {why}") from e
        check_finite(model.state_dict(), weights.name)
    model.eval()
    cfg = model.pretrained_cfg
    card = {
        "name": name, "title": info["title"], "source": "hub", "method": info["family"],
        "architecture": {"timm_name": name, "kwargs": dict(timm_kwargs)},
        "weights": weights.name if weights else f"https://huggingface.co/{cfg.get('hf_hub_id')}",
        "classes": class_names(model) if model.num_classes else [],
        "preprocessing": data_config(model),
        "accuracy": {"test": None, "note": "not measured here"},
        "data": info["data"], "license": cfg.get("license"), "convpass_ready": info.get("convpass_ready", False),
    }
    return Loaded(name, "hub", model, card, image_transform(model))


# --------------------------------------------------------------------------------------------------- public API
def list_models(root: str | Path | None = None) -> list[ZooEntry]:
    """Every model the app can offer: the shipped entries (and any other entry folder under the root), then the
    hub entries; each says whether it can be loaded now. Checks the hub at most once (≤ 2 s when unreachable)."""
    base = _root(root)
    found = sorted(p.parent.name for p in base.glob("*/card.json")) if base.is_dir() else []
    entries = []
    for name in [*SHIPPED, *(n for n in found if n not in SHIPPED)]:
        directory = base / name
        try:
            card = read_card(directory)
        except CheckpointError as e:
            reason = f"{name} is not shipped yet (no {directory})" if not directory.exists() else str(e)
            entries.append(ZooEntry(name, name, "shipped", SHIPPED.get(name, "vit"), False, reason))
            continue
        weights = _weights(directory)
        reason = "" if weights.is_file() else f"{weights} is missing"
        if not reason and weights.name == ADAPTERS and not (base / card["backbone"] / "model.safetensors").is_file():
            reason = f"its backbone {card['backbone']} is missing"
        entries.append(ZooEntry(name, card["title"], "shipped", _FAMILY.get(card["method"], "vit"), not reason,
                                reason))
    reachable = None
    for name, info in HUB.items():
        if reachable is None and not _cached_weights(name) and not _offline_env():
            reachable = _hub_reachable()
        available, reason = hub_status(name, reachable)
        entries.append(ZooEntry(name, info["title"], "hub", info["family"], available, reason,
                                info.get("convpass_ready", False)))
    return entries


def dimensions(name: str, root: str | Path | None = None) -> tuple[int, int]:
    """(blocks, heads per block) of the zoo model `name`'s architecture, from a skeleton on the meta device: no
    weights are read or downloaded. Raises ValueError (unknown name) or CheckpointError (a shipped card)."""
    with torch.device("meta"):
        if name in HUB:
            model = create_model(name)
        elif name in SHIPPED or (_entry(name, root) / "card.json").is_file():
            model = _construct(read_card(_entry(name, root)))
        else:
            raise ValueError(f"unknown model {name!r}")
    return len(model.blocks), max(block.attn.num_heads for block in model.blocks)


def shipped_pair(name: str, root: str | Path | None = None) -> dict[str, str]:
    """The shipped ConViT and DeiT trained on the data `name` was trained on (for an adapted model, the data of its
    backbone), as {"convit": name, "deit": name}: `name` itself where it is one, else the first in `SHIPPED` order.
    Empty for hub models and names without a card; a key is missing when no such model is shipped."""
    def card(entry: str) -> dict | None:
        try:
            return read_card(_entry(entry, root))
        except (CheckpointError, ValueError):
            return None

    own = card(name) if name not in HUB else None
    if own is None:
        return {}
    if own["method"] in _ADAPTED:
        own = card(own["backbone"]) or own
    data = own.get("recipe", {}).get("data")
    base = _root(root)
    found = sorted(p.parent.name for p in base.glob("*/card.json")) if base.is_dir() else []
    pair = {}
    for entry in [name, *SHIPPED, *found]:
        other = card(entry)
        if other and other["method"] in ("convit", "deit") and other.get("recipe", {}).get("data") == data:
            pair.setdefault(other["method"], entry)
    return pair


def snapshot_steps(name: str, root: str | Path | None = None) -> list[int]:
    """The training steps at which the shipped entry `name` has a snapshot (`petl_core train --snapshots`), in
    order; empty for entries without snapshots and for hub models."""
    folder = _entry(name, root) / "snapshots"
    return sorted(int(p.stem.removeprefix("step")) for p in folder.glob("step*.safetensors")) if folder.is_dir() \
        else []


def _with_snapshot(loaded: Loaded, directory: Path, step: int) -> Loaded:
    """`loaded` with the tensors of its snapshot at `step` (fp16 on disk, the model's own dtype in memory); the card
    says which step and the test accuracy the history recorded there."""
    path = directory / "snapshots" / f"step{step:06d}.safetensors"
    if not path.is_file():
        steps = snapshot_steps(directory.name, directory.parent)
        raise CheckpointError(f"{loaded.name} has no snapshot at step {step}; it has {steps or 'none'}")
    tensors = read_state_dict(path)
    own = loaded.model.state_dict()
    unknown = [k for k in tensors if k not in own or own[k].shape != tensors[k].shape]
    if unknown:
        raise CheckpointError(f"{path.name} does not fit {loaded.name}: {len(unknown)} tensors (e.g. {unknown[0]})")
    loaded.model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in tensors.items()}})
    entries = (read_history(directory.name, directory.parent) or {}).get("entries", [])
    accuracy = next((e["test_accuracy"] for e in entries if e["step"] == step), None)
    card = {**loaded.card, "snapshot": {"step": step, "test_accuracy": accuracy}}
    return replace(loaded, card=card)


def load(name: str, *, file: str | Path | None = None, root: str | Path | None = None, snapshot: int | None = None,
         **timm_kwargs) -> Loaded:
    """Load a zoo model by name.

    Shipped names load offline from `<root>/<name>/`; with `file`, that entry's architecture, classes and
    preprocessing take the file's weights instead (e.g. a `petl_core train` run of the same recipe; source 'local').
    With `snapshot` (a step of `snapshot_steps`), a shipped entry as it was at that step of its training.
    Hub names load through timm: from `file` when given (a
    timm-format .safetensors/.pth), from the Hugging Face cache when the weights are there, else from the hub;
    with none of these, HubUnavailableError says so in one sentence, at once. `timm_kwargs` (hub only) go to
    timm's create_model (e.g. num_classes).

    Raises:
        ValueError: unknown name. CheckpointError: missing or unfitting weights or card. HubUnavailableError.
    """
    if name in HUB:
        if snapshot is not None:
            raise ValueError(f"{name} is a hub model: it has no training snapshots")
        return _load_hub(name, file, timm_kwargs)
    directory = _entry(name, root)
    if name not in SHIPPED and not (directory / "card.json").is_file():
        known = [e.name for e in list_models(root) if e.source == "shipped"] + list(HUB)
        raise ValueError(f"unknown model {name!r}; the zoo has {', '.join(known)}")
    if timm_kwargs:
        raise ValueError(f"{name} is a shipped model: it takes no timm arguments (see load_local)")
    if not directory.is_dir():
        raise CheckpointError(f"{name} is not shipped yet: {directory} does not exist")
    if snapshot is not None:
        if file is not None:
            raise ValueError("a snapshot is a step of the shipped weights: pass either file or snapshot")
        return _with_snapshot(_load_entry(directory, name, "shipped"), directory, snapshot)
    if file is None:
        return _load_entry(directory, name, "shipped")
    weights = check_weights_file(file)
    card = {**read_card(directory), "source": "local", "weights": weights.name, "title": f"{name} architecture with "
            f"weights from {weights.name}", "accuracy": {"test": None, "note": "not measured here"}}
    return Loaded(name, "local", _build(card, weights), card, _card_preprocess(card))


def load_local(path: str | Path, timm_name: str | None = None, **timm_kwargs) -> Loaded:
    """Load a weights file from disk (source 'local').

    With `timm_name`: that timm architecture (`timm_kwargs` as for create_model), loaded strictly, with timm's
    evaluation transform. Without: the file must sit in an entry folder (card.json) or a `petl_core.train` run
    folder (history.json), which say how it was made and preprocessed.

    Raises:
        CheckpointError: the file is missing, unreadable or does not fit the architecture.
    """
    path = check_weights_file(path)
    if timm_name is None:
        if (path.parent / "card.json").is_file():
            card = {**read_card(path.parent), "source": "local"}
        elif (path.parent / "history.json").is_file():
            history = json.loads((path.parent / "history.json").read_text())
            card = {**card_from_history(history, path.parent.name, f"{history['config']['method']} run "
                                        f"{path.parent.name}"), "source": "local"}
        else:
            raise ValueError(f"{path.name} has no card.json or history.json beside it: pass timm_name")
        return Loaded(card["name"], "local", _build(card, path), card, _card_preprocess(card))
    model = load_checkpoint(create_model(timm_name, **timm_kwargs), path).eval()
    card = {
        "name": path.stem, "title": f"{timm_name} from {path.name}", "source": "local",
        "method": "convit" if "convit" in timm_name else "vit",
        "architecture": {"timm_name": timm_name, "kwargs": dict(timm_kwargs)}, "weights": str(path),
        "classes": class_names(model) if model.num_classes else [], "preprocessing": data_config(model),
        "accuracy": {"test": None, "note": "not measured here"},
    }
    return Loaded(path.stem, "local", model, card, image_transform(model))

