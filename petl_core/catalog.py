"""The catalogue of the models the explorer offers: shipped entries (folders under `assets/models/`, or the root
given) and hub entries, with what each is, whether it can be loaded now, its dimensions, its training history and
snapshots. Torch-free: it reads card.json and history.json files and asks the hub cache, so a page can list the
models before torch loads. `petl_core.zoo` loads them (and re-exports all of this).

>>> from petl_core import catalog
>>> [(m.name, m.source, m.available) for m in catalog.list_models()]
>>> catalog.dimensions("convit_scenes")   # (blocks, heads per block), from the card
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .cards import ModelCard
from .errors import CheckpointError
from .hub import HUB, cached_weights, hub_reachable, hub_status, offline

__all__ = ["ADAPTERS", "ASSETS", "BROWSER_MODELS", "DEFAULT_MODEL", "DIAL_GRAPHS", "HUB", "PROBE_IMAGES", "SHIPPED",
           "ZooEntry", "dial_graphs_manifest", "dimensions", "entry_dir", "entry_file_for_weights", "file_sha256",
           "list_models", "read_history", "shipped_pair", "snapshot_steps", "weights_file"]

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "models"
"""Default home of the shipped entries (overridden by `root=` arguments or the PETL_ASSETS variable)."""

SHIPPED = {"convit_scenes_gpsa50": "convit", "convit_scenes": "convit", "deit_scenes": "vit",
           "convpass_digit_scenes": "convpass", "convit_fmnist": "convit", "deit_fmnist": "vit",
           "convpass_digits": "convpass"}
"""The entries this project ships (name: family), the scenes task first, then the simpler Fashion-MNIST one; listed
even while they are missing (as unavailable)."""
DEFAULT_MODEL = "convit_scenes_gpsa50"
"""The model the app and the CLI open with."""
BROWSER_MODELS = ("convit_scenes_gpsa50", "convit_scenes")
"""The shipped ConViTs whose dial graphs ship (petl_core.export; the guided path's, 2.6 MB each): convit_fmnist's
would take 6 MB of the 80 MB assets/ may hold, and its dial is scored on the server."""
PROBE_IMAGES = 256
"""How many test images of its own task the dial scores a model on (the first ones: petl_core.dial.probe_set)."""
DIAL_GRAPHS = "browser"
"""The folder of an entry that holds its dial graphs and their manifest (`dial.json`: petl_core.export)."""

ADAPTERS = "adapters.safetensors"
"""An adapted entry's own tensors (bypasses and head) when it refers to its backbone entry instead of a copy."""


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


def _root(root: str | Path | None) -> Path:
    return Path(root or os.environ.get("PETL_ASSETS") or ASSETS)


def _entry(name: str, root: str | Path | None) -> Path:
    """The folder of entry `name` under the root; a name that is not a plain folder name is an unknown model (never
    a way out of the root)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name) or ".." in name:
        raise ValueError(f"unknown model {str(name)[:60]!r}")
    return _root(root) / name


def read_history(name: str, root: str | Path | None = None) -> dict | None:
    """The training history (history.json) of the entry `name`, or None when it has none (hub models)."""
    path = _entry(name, root) / "history.json"
    return json.loads(path.read_text()) if path.is_file() else None


def weights_file(directory: Path) -> Path:
    """The weights file of an entry folder: model.safetensors, or the adapters of one that refers to its backbone."""
    return directory / ADAPTERS if (directory / ADAPTERS).is_file() else directory / "model.safetensors"


def list_models(root: str | Path | None = None) -> list[ZooEntry]:
    """Every model the app can offer: the shipped entries (and any other entry folder under the root), then the
    hub entries; each says whether it can be loaded now. Checks the hub at most once (≤ 2 s when unreachable)."""
    base = _root(root)
    found = sorted(p.parent.name for p in base.glob("*/card.json")) if base.is_dir() else []
    entries = []
    for name in [*SHIPPED, *(n for n in found if n not in SHIPPED)]:
        directory = base / name
        try:
            card = ModelCard.load(directory)
        except CheckpointError as e:
            reason = f"{name} is not shipped yet (no {directory})" if not directory.exists() else str(e)
            entries.append(ZooEntry(name, name, "shipped", SHIPPED.get(name, "vit"), False, reason))
            continue
        weights = weights_file(directory)
        reason = "" if weights.is_file() else f"{weights} is missing"
        if not reason and weights.name == ADAPTERS and not (base / card.backbone / "model.safetensors").is_file():
            reason = f"its backbone {card.backbone} is missing"
        entries.append(ZooEntry(name, card.title, "shipped", card.family, not reason, reason))
    reachable = None
    for name, info in HUB.items():
        if reachable is None and not cached_weights(name) and not offline():
            reachable = hub_reachable()
        available, reason = hub_status(name, reachable)
        entries.append(ZooEntry(name, info["title"], "hub", info["family"], available, reason,
                                info.get("convpass_ready", False)))
    return entries


def dimensions(name: str, root: str | Path | None = None) -> tuple[int, int]:
    """(blocks, heads per block) of the zoo model `name`'s architecture: as HUB records it, as its card's builder
    arguments say (timm builds `depth` blocks of `num_heads` heads), else from a skeleton on the meta device (about
    0.3 s, random init included). No weights are read or downloaded. Raises ValueError (unknown name) or
    CheckpointError (a shipped card)."""
    if name in HUB:
        return HUB[name]["blocks"], HUB[name]["heads"]
    if not (name in SHIPPED or (_entry(name, root) / "card.json").is_file()):
        raise ValueError(f"unknown model {name!r}")
    card = ModelCard.load(_entry(name, root))
    kwargs = card.architecture["kwargs"]
    if isinstance(kwargs.get("depth"), int) and isinstance(kwargs.get("num_heads"), int):
        return kwargs["depth"], kwargs["num_heads"]
    from .building import construct  # (a card without them: a skeleton tells, and building one needs torch)
    from .zoo import skeleton_dimensions

    return skeleton_dimensions(construct, card)


def shipped_pair(name: str, root: str | Path | None = None) -> dict[str, str]:
    """The shipped ConViT and DeiT trained on the data `name` was trained on (for an adapted model, the data of its
    backbone), as {"convit": name, "deit": name}: `name` itself where it is one, else the first in `SHIPPED` order.
    Empty for hub models and names without a card; a key is missing when no such model is shipped."""
    def card(entry: str) -> ModelCard | None:
        try:
            return ModelCard.load(_entry(entry, root))
        except (CheckpointError, ValueError):
            return None

    own = card(name) if name not in HUB else None
    if own is None:
        return {}
    if own.adapted:
        own = card(own.backbone) or own
    data = (own.recipe or {}).get("data")
    base = _root(root)
    found = sorted(p.parent.name for p in base.glob("*/card.json")) if base.is_dir() else []
    pair = {}
    for entry in [name, *SHIPPED, *found]:
        other = card(entry)
        if other and other.method in ("convit", "deit") and (other.recipe or {}).get("data") == data:
            pair.setdefault(other.method, entry)
    return pair


def snapshot_steps(name: str, root: str | Path | None = None) -> list[int]:
    """The training steps at which the shipped entry `name` has a snapshot (`petl_core train --snapshots`), in
    order; empty for entries without snapshots and for hub models."""
    folder = _entry(name, root) / "snapshots"
    return sorted(int(p.stem.removeprefix("step")) for p in folder.glob("step*.safetensors")) if folder.is_dir() \
        else []


def dial_graphs_manifest(name: str, root: str | Path | None = None) -> tuple[Path, dict] | None:
    """The folder of the shipped entry `name`'s dial graphs and their manifest (petl_core.export), when they were
    made from the entry's weights file as it is now; else None (no graphs, an unreadable manifest, or graphs of
    other weights)."""
    manifest = entry_file_for_weights(name, f"{DIAL_GRAPHS}/dial.json", root)
    return None if manifest is None else (_entry(name, root) / DIAL_GRAPHS, manifest)


def entry_file_for_weights(name: str, file: str, root: str | Path | None = None) -> dict | None:
    """The JSON object in `file` of the entry `name` (a path inside its folder), when it records the SHA-256 of the
    entry's weights file as it is now (`weights_sha256`): what was measured or made from those weights. Else None
    (no such file, an unreadable one, or one of other weights)."""
    try:
        directory = _entry(name, root)
        value = json.loads((directory / file).read_text())
    except (OSError, ValueError):  # (ValueError: a name that is no entry's, or text that is not JSON)
        return None
    if not isinstance(value, dict) or value.get("weights_sha256") != file_sha256(weights_file(directory)):
        return None
    return value


def entry_dir(name: str, root: str | Path | None = None) -> Path:
    """The folder of the entry `name` under the zoo's root (ValueError for a name that is no plain folder name)."""
    return _entry(name, root)


def file_sha256(path: str | Path) -> str | None:
    """The SHA-256 of a file, or None where it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(2**20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()
