"""Loading the models the explorer offers: shipped (trained here, in `assets/models/`), hub (timm weights) and local
files. What is offered (`list_models`, `dimensions`, histories, snapshots) is `petl_core.catalog`, torch-free and
re-exported here.

>>> from petl_core import zoo
>>> [(m.name, m.source, m.available) for m in zoo.list_models()]
>>> loaded = zoo.load("convit_fmnist")          # .model (eval mode), .card (ModelCard), .preprocess(pil) -> tensor
>>> logits = loaded.model(loaded.preprocess(image)[None])
>>> zoo.load("deit_tiny_patch16_224.fb_in1k", file="deit_tiny.safetensors")   # hub entry, weights from a file

Shipped entry = a folder `<root>/<name>/` holding `model.safetensors` (the FULL state dict: for Convpass the
backbone, the bypasses and the head), `card.json` (a saved ModelCard) and
the run's `history.json`. The root is `root=` if given, else the `PETL_ASSETS` environment variable, else
`ASSETS`. `write_entry(run_dir, name, title)` makes one from a finished `petl_core.train` run.

Cards are `petl_core.cards.ModelCard`s; which hub models can be had now is `petl_core.hub`, building from a card
`petl_core.building`.

Nothing is cached: every `load` builds a fresh model, so callers may change it (add_convpass, reset_classifier).
A shipped model loads in a fraction of a second: it is built on the meta device (no random initialisation), then
its weights are loaded strictly. `list_models` never lists local files (the user names them at load time);
`load_local` loads one, as source 'local'.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import torch

from .analysis import class_names
from .building import Loaded, build, initial_model, materialised
from .cards import NOT_MEASURED, ModelCard, card_from_history
from .catalog import (
    ADAPTERS,
    ASSETS,
    DEFAULT_MODEL,
    SHIPPED,
    ZooEntry,
    _entry,
    dimensions,
    list_models,
    read_history,
    shipped_pair,
    snapshot_steps,
    weights_file,
)
from .checkpoint import CheckpointError, check_finite, check_weights_file, load_checkpoint, misfit, read_state_dict
from .convpass import load_convpass, save_convpass
from .errors import HubUnavailableError
from .hub import HUB, cached_weights, hub_status
from .images import data_config, image_transform
from .models import create_model
from .preprocess import card_transform

__all__ = [
    "ASSETS",
    "DEFAULT_MODEL",
    "HUB",
    "SHIPPED",
    "Loaded",
    "ModelCard",
    "ZooEntry",
    "card_from_history",
    "dimensions",
    "hub_status",
    "initial_model",
    "list_models",
    "load",
    "load_local",
    "read_history",
    "shipped_pair",
    "snapshot_steps",
    "write_entry",
]


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
        backbone = _entry(card.backbone, root) if card.convpass is not None else None
    except ValueError:  # a file path, not an entry name: nothing to refer to
        backbone = None
    adapted = None
    if backbone is not None and (backbone / "card.json").is_file():
        adapted = build(card, run_dir / "model.safetensors")
        frozen = read_state_dict(backbone / "model.safetensors")
        own = adapted.state_dict()
        differ = [k for k, v in frozen.items() if not k.startswith("head.") and not torch.equal(own[k], v)]
        if differ:
            raise CheckpointError(f"{run_dir} did not adapt {card.backbone}'s weights ({differ[0]} differs): "
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
    # an entry's snapshots are its run's only: an earlier run's steps would be replayed as this one's
    shutil.rmtree(entry / "snapshots", ignore_errors=True)
    if (run_dir / "snapshots").is_dir():
        shutil.copytree(run_dir / "snapshots", entry / "snapshots")
    card.save(entry)
    ModelCard.load(entry)  # what was written loads
    return entry


def _transform(card: ModelCard):
    """The inference transform of a card of a model trained here."""
    return card_transform(card.preprocessing, card.architecture["kwargs"].get("in_chans", 1))


def _load_entry(directory: Path, name: str, source: str) -> Loaded:
    card = ModelCard.load(directory, source=source)
    weights = weights_file(directory)
    if weights.name != ADAPTERS:
        return Loaded(name, source, build(card, weights), card, _transform(card))
    backbone_dir = _entry(card.backbone, directory.parent)
    if not (backbone_dir / "model.safetensors").is_file():
        raise CheckpointError(f"{name} adapts {card.backbone}, whose weights are missing ({backbone_dir})")
    # The backbone as training built it: this entry's architecture with the backbone's head, then its weights
    backbone_card, arch = ModelCard.load(backbone_dir), card.architecture
    classes = backbone_card.architecture["kwargs"]["num_classes"]
    backbone = replace(backbone_card, architecture={**arch, "kwargs": {**arch["kwargs"], "num_classes": classes}})
    model = build(backbone, backbone_dir / "model.safetensors")
    try:
        check_finite(read_state_dict(weights), weights.name)
        load_convpass(model, check_weights_file(weights))
    except ValueError as e:
        raise CheckpointError(f"{name}: {e}") from e
    if asdict(model.convpass_config) != card.convpass:
        raise CheckpointError(f"{name}: {weights.name} holds bypasses {model.convpass_config}, the card says "
                              f"{card.convpass}")
    model.label_names = list(card.classes)
    return Loaded(name, source, model.eval(), card, _transform(card))


def _why_not(name: str, weights: Path, timm_kwargs: dict, error: BaseException) -> str:
    """One clause on why timm could not load `weights` as `name`: the file's tensors against the architecture's."""
    with torch.device("meta"):  # no memory, no init: only names and shapes matter
        skeleton = create_model(name, **timm_kwargs)
    return misfit(skeleton, weights) or " ".join(str(error).split())[:300] or type(error).__name__


def _hub_from_file(name: str, weights: Path, timm_kwargs: dict) -> torch.nn.Module:
    """The architecture of hub entry `name` (its pretrained config, for the card and the transform) with the weights
    of a caller's file, which must fit it exactly: names and shapes are checked on the meta device before a tensor
    is read. Not timm's pretrained loader: it adapts what does not fit (a patch embedding of any size is resampled
    through an identity matrix of (S²)² floats for an S×S kernel), and a file that fits needs no adapting."""
    def make() -> torch.nn.Module:
        return create_model(name, **timm_kwargs)  # pretrained=False still sets the tag's pretrained_cfg

    with torch.device("meta"):
        skeleton = make()
    problem = misfit(skeleton, weights)
    if problem:
        raise CheckpointError(f"{weights.name} does not hold weights of {name}: {problem}")
    return load_checkpoint(materialised(skeleton, make), weights)


def load_hub(name: str, file: str | Path | None, timm_kwargs: dict) -> Loaded:
    """The hub entry `name` with timm's pretrained weights: from `file` when given (a timm-format
    .safetensors/.pth whose tensors fit the architecture `timm_kwargs` make exactly), from the Hugging Face cache
    when they are there, else downloaded. HubUnavailableError at once when none of these can be had;
    CheckpointError when `file` does not hold these weights."""
    info = HUB[name]
    if file is not None:
        weights = check_weights_file(file)  # vetted before torch unzips or unpickles a byte of it
        model = _hub_from_file(name, weights, timm_kwargs)
    else:
        cached = cached_weights(name)
        if cached is None:
            available, reason = hub_status(name)
            if not available:
                raise HubUnavailableError(reason)
        weights = Path(cached) if cached else None  # cached: read the file directly, no network at all
        if weights is None:
            model = create_model(name, pretrained=True, **timm_kwargs)
        else:  # timm's loader for timm's own files: they may need its adapting (e.g. another num_classes)
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
    card = ModelCard(
        name=name, title=info["title"], source="hub", method=info["family"],
        architecture={"timm_name": name, "kwargs": dict(timm_kwargs)},
        weights=weights.name if weights else f"https://huggingface.co/{cfg.get('hf_hub_id')}",
        classes=class_names(model) if model.num_classes else [], preprocessing=data_config(model),
        accuracy=dict(NOT_MEASURED), data=info["data"], license=cfg.get("license"),
        convpass_ready=info.get("convpass_ready", False))
    return Loaded(name, "hub", model, card, image_transform(model))


# --------------------------------------------------------------------------------------------------- public API
def skeleton_dimensions(make, *args) -> tuple[int, int]:
    """(blocks, heads per block) of `make(*args)` built on the meta device."""
    with torch.device("meta"):
        model = make(*args)
    return len(model.blocks), max(block.attn.num_heads for block in model.blocks)


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
    return replace(loaded, card=replace(loaded.card, snapshot={"step": step, "test_accuracy": accuracy}))


def load(name: str, *, file: str | Path | None = None, root: str | Path | None = None, snapshot: int | None = None,
         **timm_kwargs) -> Loaded:
    """Load a zoo model by name.

    Shipped names load offline from `<root>/<name>/`; with `file`, that entry's architecture, classes and
    preprocessing take the file's weights instead (e.g. a `petl_core train` run of the same recipe; source 'local').
    With `snapshot` (a step of `snapshot_steps`), a shipped entry as it was at that step of its training.
    Hub names load through timm: from `file` when given (a
    timm-format .safetensors/.pth), from the Hugging Face cache when the weights are there, else from the hub;
    with none of these, HubUnavailableError says so in one sentence, at once. `timm_kwargs` (hub only) go to
    timm's create_model (e.g. num_classes); a `file` must fit the architecture they make exactly (names and shapes,
    checked before a tensor is read: nothing is adapted).

    Raises:
        ValueError: unknown name. CheckpointError: missing or unfitting weights or card. HubUnavailableError.
    """
    if name in HUB:
        if snapshot is not None:
            raise ValueError(f"{name} is a hub model: it has no training snapshots")
        return load_hub(name, file, timm_kwargs)
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
    card = ModelCard.load(directory, source="local", weights=weights.name, accuracy=dict(NOT_MEASURED),
                          title=f"{name} architecture with weights from {weights.name}")
    return Loaded(name, "local", build(card, weights), card, _transform(card))


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
            card = ModelCard.load(path.parent, source="local")
        elif (path.parent / "history.json").is_file():
            history = json.loads((path.parent / "history.json").read_text())
            card = replace(card_from_history(history, path.parent.name,
                                             f"{history['config']['method']} run {path.parent.name}"), source="local")
        else:
            raise ValueError(f"{path.name} has no card.json or history.json beside it: pass timm_name")
        return Loaded(card.name, "local", build(card, path), card, _transform(card))
    def make() -> torch.nn.Module:
        return create_model(timm_name, **timm_kwargs)

    with torch.device("meta"):  # no random init: the file must hold every tensor (checked before one is read)
        skeleton = make()
    model = load_checkpoint(materialised(skeleton, make), path).eval()
    card = ModelCard(name=path.stem, title=f"{timm_name} from {path.name}", source="local",
                     method="convit" if "convit" in timm_name else "vit",
                     architecture={"timm_name": timm_name, "kwargs": dict(timm_kwargs)}, weights=str(path),
                     classes=class_names(model) if model.num_classes else [], preprocessing=data_config(model),
                     accuracy=dict(NOT_MEASURED))
    return Loaded(path.stem, "local", model, card, image_transform(model))

