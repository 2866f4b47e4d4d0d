"""Model cards: what a model is, how it was made and how its inputs are prepared, as a checked dataclass.

A shipped entry's `card.json` is a `ModelCard` saved with `save`; `ModelCard.load` is the one place that reads one
(every field is checked in `__post_init__`: a card may come from anyone's upload folder). `card_from_history` makes
the card of a finished `petl_core.train` run.

    {"name": "convit_fmnist", "title": "ConViT (9 heads, depth 6) trained on Fashion-MNIST",
     "method": "convit",                      # TrainConfig.method: convit, deit, convpass, convpass_attn, ...
     "architecture": {"timm_name": "convit_tiny", "kwargs": {...ARCHITECTURES kwargs..., "num_classes": 10}},
     "backbone": "deit_fmnist",               # adapted methods only: what was adapted
     "convpass": {"dim": 8, "scale": 10.0, "where": "both", "conv_init": "identity", "dropout": 0.1},  # Convpass only
     "classes": ["T-shirt/top", ...],
     "preprocessing": {"mean": 0.286, "std": 0.353, "base_size": 28, "pad": 2, "in_chans": 1},
     "accuracy": {"test": 0.87, "test_images": 10000, "step": 3000},
     "parameters": {"total": 1234, "trainable": 1234},
     "data": "...", "augmentation": {"shift": 2, "hflip": true}, "recipe": {...},
     "made_with": "python -m petl_core train ...", "wall_time_s": 123.4, "hardware": "...",
     "software": {"python": ..., "torch": ..., "timm": ...}}

Cards of hub and local-file models (made at load time) have the same type; their `preprocessing` is timm's data
config and their accuracy `{"test": None, "note": "not measured here"}`.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .errors import CheckpointError, DatasetMissingError
from .registry import ADAPTED, BASE_SIZE, FAMILY, PAD
from .registry import architecture as architecture_of

__all__ = ["NOT_MEASURED", "ModelCard", "card_from_history"]

NOT_MEASURED = {"test": None, "note": "not measured here"}
_LOAD_STATE = ("source", "snapshot")  # how a card was loaded, not what the entry is: never saved


@dataclass(frozen=True)
class ModelCard:
    """What one model is. Raises ValueError when a field is missing, of the wrong type, or inconsistent."""

    name: str
    title: str
    method: str
    """A TrainConfig.method for trained models; 'convit' or 'vit' for hub and local timm files."""
    architecture: dict
    """{"timm_name": str, "kwargs": dict}: what `create_model` builds."""
    classes: list[str]
    """Class names in output order (empty for a backbone without classifier)."""
    preprocessing: dict
    """Trained here: mean, std, base_size, pad, in_chans. timm models: timm's data config."""
    accuracy: dict
    """{"test": fraction or None, ...}: where and when it was measured."""
    source: str = "shipped"
    """'shipped', 'hub' or 'local': where it was loaded from (not saved)."""
    backbone: str | None = None
    """Adapted methods: the entry (or file) they adapt."""
    convpass: dict | None = None
    """Convpass methods: their ConvpassConfig as a dict."""
    parameters: dict | None = None
    data: str | None = None
    augmentation: dict | None = None
    recipe: dict | None = None
    made_with: str | None = None
    wall_time_s: float | None = None
    hardware: str | None = None
    software: dict | None = None
    weights: str | None = None
    """Hub and local models: the weights file (or hub address) they came from."""
    license: str | None = None
    convpass_ready: bool = False
    """A plain ViT backbone meant to be adapted with `add_convpass`."""
    snapshot: dict | None = None
    """A shipped model loaded at a training snapshot: {"step": int, "test_accuracy": float or None} (not saved)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        if not all(isinstance(c, str) for c in self.classes):
            raise ValueError("card field classes must be a list of names, not of other things")
        arch = self.architecture
        if not isinstance(arch.get("timm_name"), str) or not isinstance(arch.get("kwargs"), dict):
            raise ValueError("card field architecture must hold timm_name (a name) and kwargs (a dict)")
        fetching = [k for k in arch["kwargs"] if str(k).startswith("pretrained") or k in ("checkpoint_path",
                                                                                          "cache_dir")]
        if fetching:  # a card says what to build, never where to read or download weights from
            raise ValueError(f"card field architecture.kwargs may not set {', '.join(map(str, fetching))}")
        if self.method in ADAPTED and self.backbone is None:
            raise ValueError(f"a {self.method} card must name its backbone")
        if self.method.startswith("convpass") and self.convpass is None:
            raise ValueError(f"a {self.method} card must give its convpass settings")
        if self.source == "shipped" or "base_size" in self.preprocessing:
            self._check_trained_preprocessing()

    def _check_trained_preprocessing(self) -> None:
        """The preprocessing of a model trained here makes exactly its architecture's input size."""
        pre = self.preprocessing
        missing = [k for k in ("mean", "std") if k not in pre]
        if missing:
            raise ValueError(f"the card lacks {', '.join(f'preprocessing.{k}' for k in missing)}")
        base_size, pad = pre.get("base_size", BASE_SIZE), pre.get("pad", PAD)
        img_size = self.architecture["kwargs"].get("img_size", BASE_SIZE + 2 * PAD)
        if not (isinstance(base_size, int) and isinstance(pad, int) and base_size > 0 and pad >= 0
                and base_size + 2 * pad == img_size):
            raise ValueError(f"the card asks for {base_size}-pixel images padded by {pad}, which does not make the "
                             f"architecture's {img_size}-pixel input")

    @property
    def family(self) -> str:
        """'convit', 'vit' or 'convpass' (which views apply)."""
        return FAMILY.get(self.method, "vit")

    @property
    def adapted(self) -> bool:
        return self.method in ADAPTED

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data, without the fields that are not set."""
        return {k: v for k, v in asdict(self).items() if v is not None and not (k == "convpass_ready" and not v)}

    @classmethod
    def from_dict(cls, data: dict, **overrides: Any) -> ModelCard:
        """A card from `to_dict`'s form (unknown keys are refused); `overrides` replace fields."""
        if not isinstance(data, dict):
            raise ValueError(f"a card is a JSON object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown card fields {', '.join(map(str, unknown))[:200]}")
        missing = [f.name for f in fields(cls)
                   if f.name not in data and f.name not in overrides and f.default is MISSING]
        if missing:
            raise ValueError(f"the card lacks {', '.join(missing)}")
        return cls(**{**data, **overrides})

    @classmethod
    def load(cls, directory: str | Path, **overrides: Any) -> ModelCard:
        """The card.json of an entry folder. Raises CheckpointError (naming the file) for anything wrong."""
        path = Path(directory) / "card.json"
        if not path.is_file():
            raise CheckpointError(f"{Path(directory).name} has no card.json (looked in {path.parent})")
        try:
            return cls.from_dict(json.loads(path.read_text()), **overrides)
        except (OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: {e}") from e

    def save(self, directory: str | Path) -> Path:
        """Write card.json into `directory` (without how this card was loaded); returns its path."""
        path = Path(directory) / "card.json"
        saved = {k: v for k, v in self.to_dict().items() if k not in _LOAD_STATE}
        path.write_text(json.dumps(saved, indent=1, ensure_ascii=False) + "\n")
        return path


def _check_type(name: str, value: Any, annotation: str) -> None:
    """ValueError unless `value` has the field's annotated type (a card's JSON may come from anyone)."""
    kind, _, rest = annotation.partition(" |")
    if value is None and "None" in rest:
        return
    expected, said = {"str": (str, "text"), "dict": (dict, "an object"), "bool": (bool, "true or false"),
                      "list[str]": (list, "a list of names"), "float": ((int, float), "a number")}[kind]
    if not isinstance(value, expected) or (isinstance(value, bool) and kind != "bool"):
        raise ValueError(f"card field {name} must be {said}, not {type(value).__name__}")


def _command(config: dict, processes: int) -> str:
    """The command line that reproduces a run: the method and the options that differ from its defaults."""
    from .train import TrainConfig  # (making a card from a run reads the training code; reading a card does not)

    defaults = asdict(TrainConfig(method=config["method"], backbone=config.get("backbone")))
    launcher = f"torchrun --nproc_per_node {processes} -m" if processes > 1 else "python -m"
    options = []
    for k, v in config.items():
        if k == "method" or (k != "extra" and k in defaults and v != defaults[k] and v is not None):
            flag = k.replace("_", "-")
            if isinstance(v, bool):
                options.append(f"--{flag}" if v else f"--no-{flag}")
            else:
                options.append(f"--{flag} {shlex.quote(str(v))}")
    return " ".join([launcher, "petl_core train", *options])


def _describe(data: str) -> str:
    """A dataset's description (what its images show), or its name when it declares none."""
    from .data import dataset_spec

    try:
        return dataset_spec(data).description or data
    except DatasetMissingError:
        return data


def card_from_history(history: dict, name: str, title: str, *, backbone: str | None = None, data: str | None = None,
                      made_with: str | None = None, hardware: str | None = None) -> ModelCard:
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
    convpass = None
    if method.startswith("convpass"):
        from .convpass import ConvpassConfig

        convpass = asdict(ConvpassConfig(dim=config["convpass_dim"], scale=config["convpass_scale"],
                                         where="both" if method == "convpass" else "attn"))
    return ModelCard(
        name=name,
        title=title,
        method=method,
        architecture=architecture,
        classes=classes,
        preprocessing={**run_data["normalisation"], "base_size": base_size, "pad": pad,
                       "in_chans": architecture["kwargs"]["in_chans"]},
        accuracy={"test": last["test_accuracy"], "test_images": run_data["test_images"], "step": last["step"]},
        backbone=(backbone or config["backbone"]) if method in ADAPTED else None,
        convpass=convpass,
        parameters=dict(history["parameters"]),
        data=data or (f"{_describe(config['data'])}: {run_data['train_images']:,} training images{subset}, "
                      f"{run_data['test_images']:,} test images"),
        augmentation=history.get("augmentation"),
        recipe={**{k: v for k, v in config.items() if k not in ("out", "data_root", "device", "backbone")},
                "steps": history["steps"], "epochs": history["steps"] / history["steps_per_epoch"]},
        made_with=made_with or _command(config, env.get("processes", 1)),
        wall_time_s=last["wall_time"],
        hardware=hardware or (f"{env.get('processes', 1)} × {env.get('gpu') or 'CPU process'} on "
                              f"{env.get('cpu_count')} CPU cores ({env.get('platform')})"),
        software={k: env.get(k) for k in ("python", "torch", "timm")},
    )
