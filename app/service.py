"""What the app computes, shared by every tab and API endpoint: models loaded once, analyses cached by content.

No layout here. Failures a user can cause raise petl_core's errors (ImageError, CheckpointError, ...) or gr.Error;
`app.guard` turns them into one sentence for the caller. Files are read only through `app.uploads` (inside the
upload folder, with a byte limit).

Concurrency: models are loaded once per (name, weights file) under a lock and shared read-only (eval mode, no
gradients; `petl_core.trace` keeps its captures per call), so requests never see each other's state. Results are
cached by the image's bytes, so clicking a patch or switching a tab re-renders without a second forward pass.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np

from app.guard import shorten
from app.uploads import EXAMPLES, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MAX_WEIGHTS_BYTES, allowed_file, read_upload
from petl_core import catalog
from petl_core.hub import HUB
from petl_core.query import Query
from petl_core.query import parse_query as query_from_text
from petl_core.runtime import resolve_device

if TYPE_CHECKING:  # the rest of petl_core, and torch, are imported where they are used: the page is served first
    import torch
    from torch import nn

    from petl_core.analysis import Analysis
    from petl_core.atlas import Atlas
    from petl_core.data import ImageSet
    from petl_core.dial import DialProbe
    from petl_core.examples import Example
    from petl_core.metrics import GpsaHeads
    from petl_core.probe import Trace
    from petl_core.zoo import Loaded

__all__ = ["BACKEND", "Dialled", "QueryError", "Result", "Service", "parse_index", "parse_query", "training_pair"]

log = logging.getLogger("explorer")

BACKEND = ("petl_core.zoo", "petl_core.analysis", "petl_core.atlas", "petl_core.dial", "petl_core.equation",
           "petl_core.examples", "petl_core.figures", "petl_core.images", "petl_core.inputs", "petl_core.metrics",
           "petl_core.preprocess")
"""The modules the app computes with, which it imports where they are used (so the page is served before torch
loads): `Service.start` imports them all in one thread before any request runs, so that requests never import them
at the same time (tests/test_imports.py checks that the app imports no other petl_core module that way)."""
RESULTS_KEPT = 16
"""Analyses kept for re-rendering (a few MB each for the shipped models)."""
MODELS_KEPT = 6
"""Models kept loaded (hub ViT-B weighs 330 MB; uploads of many weight files must not exhaust memory)."""
SNAPSHOTS_KEPT = 48
"""Training snapshots kept loaded (a shipped scenes model is under 1 MB in fp16, about 2 MB in memory): the
snapshots of a ConViT and a DeiT, so replaying a training run loads each snapshot once."""


@dataclass
class Result:
    """One image through one model, everything on the CPU, ready to draw."""

    model_name: str
    card: dict
    """The model card as JSON-ready data (ModelCard.to_dict)."""
    input_image: np.ndarray
    """(height, width, 3) in [0, 1]: exactly the tensor the model saw, un-normalised (grayscale shown as gray)."""
    analysis: Analysis
    """With `init_nonlocality`: the same architecture at initialisation on the same input."""
    inputs: torch.Tensor
    """(C, H, W) on the CPU: the normalised tensor the model saw (what other passes over this image start from)."""
    inverted: bool = False
    """Whether the image was inverted first (a light background for a light-on-dark model: petl_core.inputs)."""

    @property
    def trace(self) -> Trace:
        return self.analysis.trace


@dataclass
class Dialled:
    """One image through a ConViT with its gates set by hand (Service.dial)."""

    trained: Result
    """The same image through the model as trained."""
    analysis: Analysis
    """With the gates as set (on the CPU)."""
    gates: list[torch.Tensor]
    """Per GPSA block: (H,) σ as applied."""
    probe_accuracy: float | None
    """Top-1 on the first `probe_images` test images of the model's own task, with the gates as set."""
    probe_images: int


try:  # Hugging Face ZeroGPU: `spaces.GPU` lends a GPU for each decorated call; elsewhere the package is absent
    from spaces import GPU as _gpu
except ImportError:
    def _gpu(fn: Callable) -> Callable:
        return fn


@_gpu
def _forward(model: nn.Module, initial: nn.Module, inputs: torch.Tensor, device: torch.device) -> Analysis:
    """Both forward passes of an analysis (the part a ZeroGPU Space runs on its lent GPU)."""
    from petl_core.analysis import analyze

    analysis = analyze(model, inputs.to(device), initial)
    bad = analysis.non_finite()
    if bad:  # finite weights can still overflow: say so rather than draw empty maps
        raise gr.Error(f"The model's {' and '.join(bad)} on this image are not finite (NaN or infinite values): "
                       f"its weights overflow.")
    return replace(analysis, trace=analysis.trace.to("cpu"))  # (nonlocality is on the CPU already)


def _image_bytes(image: str | None) -> bytes:
    """The uploaded image file's bytes (inside the upload folder, within the size limit)."""
    if not image or not isinstance(image, str):
        raise gr.Error("Upload an image (or pick an example) first.")
    return read_upload(image, MAX_IMAGE_BYTES, "image")


def _weights_key(file: str | None) -> str | None:
    """Uploaded files live at content-addressed paths in Gradio's cache: the path names the weights. Only files in
    the upload folder (see app.uploads) are accepted."""
    return None if not file else str(allowed_file(file, MAX_WEIGHTS_BYTES, "weights file"))


def _probe_key(model_name: str, weights: str | None, setting: list) -> tuple:
    """The key of a probe accuracy scored for `model_name` with `weights` (None: its shipped ones) under the dial
    `setting` (petl_core.dial.read_gates)."""
    return model_name, _weights_key(weights), json.dumps(setting)


def _checked_invert(invert) -> bool:
    """The invert toggle as sent: None (an API caller left the trailing toggle out) means on."""
    if invert is None:
        return True
    if not isinstance(invert, bool):
        raise gr.Error(f"invert must be true or false, not {shorten(repr(invert), 40)}.")
    return invert


def _remember(cache: OrderedDict, key, value, size: int):
    """Put `value` in an LRU `cache` of at most `size` entries (hold the lock)."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)
    return value


class Service:
    """The zoo's models on one device, loaded once, and the analyses made with them, cached: one per app, shared by
    every tab and request.

    Made without torch, so the page can be served before torch loads: `start` imports torch and the models' code and
    resolves the device (a server runs it before it takes requests: app.py, app.guard.Flight); without it each call
    imports what it needs.

    Args:
        device: auto (CUDA when present), cpu, cuda or cuda:N. Raises ValueError for CUDA without one: a device that
            may be missing is resolved at once.
    """

    def __init__(self, device: str = "auto") -> None:
        self._device_wanted = device
        self._device: torch.device | None = None
        self._device_lock = threading.Lock()
        if device not in ("auto", "cpu"):
            self.device  # noqa: B018 (resolved now: it raises here, not in a user's request)
        self._lock = threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}
        self._models: OrderedDict[tuple[str, str | None], Loaded] = OrderedDict()
        self._snapshots: OrderedDict[tuple[str, int], Loaded] = OrderedDict()
        self._initial: OrderedDict[tuple[str, str | None], nn.Module] = OrderedDict()
        self._results: OrderedDict[tuple, Result] = OrderedDict()
        self._probes: OrderedDict[str, ImageSet] = OrderedDict()
        self._probe_scores: OrderedDict[tuple, float] = OrderedDict()
        self._dial_probes: OrderedDict[tuple, DialProbe] = OrderedDict()
        self._prescored: set[tuple[str, int]] = set()
        self._atlases: OrderedDict[str, Atlas] = OrderedDict()
        self._examples: OrderedDict[str, list[Example] | None] = OrderedDict()
        self._entries: list[catalog.ZooEntry] | None = None
        self._histories: dict[str, dict | None] = {}
        self._references: dict[str, dict | None] = {}
        self._dimensions: tuple[int, int] | None = None

    def start(self) -> torch.device:
        """Import BACKEND (with it torch and timm) and resolve the device, in the calling thread; returns the device.
        Calls work without it (each imports what it needs), but a server runs it before it takes requests."""
        for module in BACKEND:
            importlib.import_module(module)
        return self.device

    @property
    def device(self) -> torch.device:
        """The device the models run on, resolved on first use (which imports torch)."""
        with self._device_lock:
            if self._device is None:
                self._device = resolve_device(self._device_wanted)
            return self._device

    # ----------------------------------------------------------------------------------------------- models
    def model_entries(self, refresh: bool = False) -> list[catalog.ZooEntry]:
        """The zoo's entries (the hub is checked once per service unless `refresh`)."""
        if self._entries is None or refresh:
            self._entries = catalog.list_models()
        return self._entries

    def model_choices(self, refresh: bool = False) -> list[tuple[str, str]]:
        """(label, name) for a dropdown: every zoo model, unavailable ones marked (choosing one says why)."""
        choices = []
        for e in self.model_entries(refresh):
            # (a hub model whose weights cannot be fetched still runs on a weights file of the user's)
            why = "hub weights unreachable: give your own file" if e.source == "hub" else f"{e.source}, unavailable now"
            label = f"{e.name} ({e.source})" if e.available else f"{e.name} ({why})"
            choices.append((label, e.name))
        return choices

    def largest_dimensions(self) -> tuple[int, int]:
        """(blocks, heads) of the deepest and the widest zoo model: the API's limits for block and head numbers
        (each view then checks the analysed model's own)."""
        if self._dimensions is None:
            sizes = [catalog.dimensions(e.name) for e in self.model_entries()]
            self._dimensions = max(b for b, _ in sizes), max(h for _, h in sizes)
        return self._dimensions

    def default_model(self) -> str:
        """The model a page opens with when nobody chose one: the hub's first ConViT when it can be had now (its
        weights cached, or the hub answering) and loads (it is then loaded), else catalog.DEFAULT_MODEL."""
        hub_convit = next((e for e in self.model_entries() if e.source == "hub" and e.family == "convit"), None)
        if hub_convit is None or not hub_convit.available:
            return catalog.DEFAULT_MODEL
        try:
            self.get_model(hub_convit.name)
        except Exception as e:  # a download cut short, a full disk, ...: the shipped default still works
            log.warning("not opening with %s, which did not load: %s", hub_convit.name, getattr(e, "message", e))
            return catalog.DEFAULT_MODEL
        return hub_convit.name

    def examples(self, name) -> list[Example] | None:
        """The shipped test images of model `name`'s own task that it gets right, then wrong (petl_core.examples),
        with its answers; worked out once per model. None for models without such images (hub models)."""
        self._check_name(name)
        if name in HUB or not next(e for e in self.model_entries() if e.name == name).available:
            return None  # (hub models have no task of ours, and no download just to find that out)
        from petl_core.examples import task_examples

        return self._load_once(self._examples, name, lambda: task_examples(self.get_model(name), EXAMPLES),
                               size=len(self.model_entries()))

    def model_entry(self, name: str) -> catalog.ZooEntry:
        """The zoo's entry of model `name` (refused in one sentence when the zoo has none)."""
        self._check_name(name)
        return next(e for e in self.model_entries() if e.name == name)

    def input_line(self, name: str, weights: str | None = None) -> str:
        """One line on what zoo model `name` sees (petl_core.inputs.describe_input; with `weights`, with that file's
        weights), or why it cannot be used now."""
        from petl_core.inputs import describe_input

        if weights:
            return f"{describe_input(self.get_model(name, weights))} Weights: the file you uploaded."
        entry = self.model_entry(name)
        return describe_input(self.get_model(name)) if entry.available else entry.reason

    def _load_once(self, cache: OrderedDict, key, make: Callable, size: int = MODELS_KEPT):
        """cache[key], made by `make()` at most once at a time per key; other keys and cache hits never wait for it
        (a hub download can take minutes)."""
        with self._lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
            key_lock = self._loading.setdefault((id(cache), key), threading.Lock())
        with key_lock:
            with self._lock:
                if key in cache:
                    return cache[key]
            value = make()
            with self._lock:
                return _remember(cache, key, value, size)

    def _check_name(self, name) -> None:
        """gr.Error unless `name` names a zoo model (the API may send anything: None, a list, a path)."""
        if not name:
            raise gr.Error("Choose a model first.")
        known = [e.name for e in self.model_entries()]
        if not isinstance(name, str) or name not in known:
            raise gr.Error(f"{shorten(repr(name), 60)} is not a model of this app; it has {', '.join(known)}.")

    def get_model(self, name: str, file: str | None = None) -> Loaded:
        """The zoo model `name` (with `file`: that architecture with the file's weights), loaded once and shared,
        on the service's device; the least recently used of more than MODELS_KEPT models is let go."""
        self._check_name(name)
        key = _weights_key(file)

        def make() -> Loaded:
            from petl_core import zoo

            loaded = zoo.load(name, file=key) if key else zoo.load(name)
            loaded.model.to(self.device).requires_grad_(False)
            return loaded

        return self._load_once(self._models, (name, key), make)

    def snapshot_steps(self, name) -> list[int]:
        """The steps at which zoo model `name` has a training snapshot; gr.Error for an unknown name or a model
        without snapshots (hub models, shipped models trained without --snapshots)."""
        self._check_name(name)
        steps = catalog.snapshot_steps(name) if name not in HUB else []
        if not steps:
            having = [e.name for e in self.model_entries() if e.source == "shipped" and catalog.snapshot_steps(e.name)]
            raise gr.Error(f"{name} has no training snapshots; these models have them: {', '.join(having)}.")
        return steps

    def snapshot_model(self, name: str, step) -> Loaded:
        """Zoo model `name` as it was at training step `step` (one of `snapshot_steps`, else a gr.Error naming
        them), loaded once and shared; the least recently used of more than SNAPSHOTS_KEPT are let go."""
        step = parse_index(step, "snapshot step", self.snapshot_steps(name))

        def make() -> Loaded:
            from petl_core import zoo

            loaded = zoo.load(name, snapshot=step)
            loaded.model.to(self.device).requires_grad_(False)
            return loaded

        return self._load_once(self._snapshots, (name, step), make, SNAPSHOTS_KEPT)

    def snapshot_result(self, image: str | None, name: str, step, progress: Callable | None = None,
                        invert: bool = True) -> Result:
        """Analyse the image file `image` with zoo model `name` at training snapshot `step` (see snapshot_model);
        the reference "at init" is the run's own first snapshot. Cached with the other results."""
        data = _image_bytes(image)
        steps = self.snapshot_steps(name)
        loaded = self.snapshot_model(name, step)
        invert = _checked_invert(invert)
        key = (hashlib.sha1(data).hexdigest(), name, "snapshot", loaded.card.snapshot["step"], invert)
        return self._analysed(key, data, name, lambda: (loaded, self.snapshot_model(name, steps[0]).model), progress,
                              invert)

    def _initial_model(self, name: str, loaded: Loaded, file_key: str | None) -> nn.Module:
        from petl_core import zoo

        return self._load_once(self._initial, (name, file_key),
                               lambda: zoo.initial_model(loaded.card).to(self.device).requires_grad_(False))

    def checkpoint_gates(self, name: str, weights: str | None = None) -> tuple[list[int], np.ndarray | None]:
        """The GPSA blocks of zoo model `name` (with `weights`: that file's) and their σ(λ) (blocks, H) as loaded,
        without an image; None for a model without GPSA."""
        import torch

        from petl_core.metrics import gpsa_heads

        heads = gpsa_heads(self.get_model(name, weights).model)
        if not heads:
            return [], None
        return [h.block for h in heads], torch.stack([h.gates for h in heads]).cpu().numpy()

    def initial_heads(self, name: str, weights: str | None = None) -> list[GpsaHeads]:
        """The GPSA heads of zoo model `name`'s architecture at initialisation (the analyses' reference at init):
        where its trained gates and positional centres started."""
        from petl_core.metrics import gpsa_heads

        return gpsa_heads(self._initial_model(name, self.get_model(name, weights), _weights_key(weights)))

    # ----------------------------------------------------------------------------------------------- analyses
    def result_for(self, image: str | None, model_name: str, weights: str | None = None,
                   progress: Callable | None = None, invert: bool = True) -> Result:
        """Analyse the image file `image` with a zoo model (see get_model); with `invert`, an image with a light
        background is inverted first for a light-on-dark model (petl_core.inputs.model_input). Cached by image bytes,
        weights and `invert`."""
        data = _image_bytes(image)
        self._check_name(model_name)
        weights_key = _weights_key(weights)
        invert = _checked_invert(invert)

        def models() -> tuple[Loaded, nn.Module]:
            if progress:
                progress(0.2, desc=f"loading {model_name}")
            loaded = self.get_model(model_name, weights)
            return loaded, self._initial_model(model_name, loaded, weights_key)

        return self._analysed((hashlib.sha1(data).hexdigest(), model_name, weights_key, invert), data, model_name,
                              models, progress, invert)

    def _analysed(self, key: tuple, data: bytes, name: str, models: Callable[[], tuple[Loaded, nn.Module]],
                  progress: Callable | None, invert: bool = True) -> Result:
        """The result cached under `key` (which says whether to `invert`), else the image `data` through `models()`
        (the model and its reference at init), remembered."""
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        from petl_core.images import load_image, to_display
        from petl_core.inputs import model_input

        picture = load_image(data, max_pixels=MAX_IMAGE_PIXELS)
        loaded, initial = models()
        if progress:
            progress(0.6, desc="tracing")
        inputs, inverted = model_input(loaded, picture, invert)
        inputs = inputs.unsqueeze(0)
        analysis = _forward(loaded.model, initial, inputs, self.device)
        config = {k: np.atleast_1d(loaded.card.preprocessing[k]).tolist() for k in ("mean", "std")}
        result = Result(name, loaded.card.to_dict(), to_display(inputs[0], config), analysis, inputs[0], inverted)
        with self._lock:
            return _remember(self._results, key, result, RESULTS_KEPT)

    # ----------------------------------------------------------------------------------------------- the dial
    def dial(self, image: str | None, model_name: str, gates: str | None, score: bool = True,
             invert: bool = True, weights: str | None = None) -> Dialled:
        """`model_name` (with `weights`: that file's) on `image` with its GPSA gates set by `gates` (JSON text: per
        GPSA block null or a list of σ per head; empty: as trained), for this call only, and its accuracy on the probe
        set of its own task: scored once per model, weights and setting, and only when `score` (else None unless
        scored before). A model with no task of ours (hub models) has no probe set: its accuracy stays None."""
        from petl_core.analysis import analyze
        from petl_core.dial import read_gates, set_gates

        trained = self.result_for(image, model_name, weights, invert=invert)  # the image checked, read, prepared
        loaded = self.get_model(model_name, weights)
        try:
            setting = read_gates(gates, loaded.model)
        except ValueError as e:
            raise gr.Error(f"{model_name}: {e}.") from None
        data = (loaded.card.recipe or {}).get("data")
        probe = self.probe(data) if data else None
        with set_gates(loaded.model, setting) as applied:
            analysis = analyze(loaded.model, trained.inputs.unsqueeze(0).to(self.device))
            accuracy, key = None, _probe_key(model_name, weights, setting)
            if probe and score:  # scored once per model and setting: stepping back to a preset answers at once
                scorer = self._dial_probe(model_name, loaded, probe)
                accuracy = self._load_once(self._probe_scores, key, lambda: scorer.accuracy(setting), size=256)
            elif probe:
                with self._lock:
                    accuracy = self._probe_scores.get(key)
        return Dialled(trained, replace(analysis, trace=analysis.trace.to("cpu")), [g.cpu() for g in applied],
                       accuracy, len(probe) if probe else 0)

    def known_probe_accuracy(self, model_name: str, gates: str | None) -> float | None:
        """The probe accuracy of shipped `model_name` with `gates` (as `dial` takes them) when scored already (the
        presets are scored at warm-up), else None: nothing is scored here."""
        from petl_core.dial import read_gates

        setting = read_gates(gates, self.get_model(model_name).model)
        with self._lock:
            return self._probe_scores.get(_probe_key(model_name, None, setting))

    def _dial_probe(self, model_name: str, loaded: Loaded, probe: ImageSet) -> DialProbe:
        """The probe scorer of model `model_name` as loaded now, made once."""
        from petl_core.dial import DialProbe

        return self._load_once(self._dial_probes, (model_name, id(loaded.model)),
                               lambda: DialProbe(loaded.model, probe, loaded.card.preprocessing), size=2)

    def prescore(self, model_name: str, settings: list[str]) -> threading.Thread | None:
        """Score the probe accuracy of each of `settings` (gates JSON, as `dial` takes them) not scored yet, in a
        background thread, once per model: the dial's presets then answer at once. The user's own scores go first
        (one scoring at a time per model), and the settings they scored last stay kept. Returns the thread, or None
        when this model's were started before or it has no probe set."""
        from petl_core.dial import read_gates

        loaded = self.get_model(model_name)
        data = (loaded.card.recipe or {}).get("data")
        with self._lock:
            if not data or (model_name, id(loaded.model)) in self._prescored:
                return None
            self._prescored.add((model_name, id(loaded.model)))
        parsed = [read_gates(gates, loaded.model) for gates in settings]

        def score_all() -> None:
            try:
                scorer = self._dial_probe(model_name, loaded, self.probe(data))
                for setting in parsed:
                    self._load_once(self._probe_scores, _probe_key(model_name, None, setting),
                                    lambda setting=setting: scorer.accuracy(setting, keep=False), size=256)
            except Exception as e:  # (a request scoring the same setting reports the error to its user)
                log.warning("scoring the dial's presets of %s: %s", model_name, e)

        worker = threading.Thread(target=score_all, name=f"prescore-{model_name}", daemon=True)
        worker.start()
        return worker

    def probe(self, data: str) -> ImageSet:
        """The probe set of dataset `data` (petl_core.dial.probe_set), read once."""
        from petl_core.dial import probe_set

        return self._load_once(self._probes, data, lambda: probe_set(data), size=4)

    def atlas_pair(self, model) -> dict[str, str]:
        """The ConViT and DeiT the atlas shows for the chosen `model` (training_pair); gr.Error for a name the app
        does not have (the API may send anything)."""
        self._check_name(model)
        return training_pair(model)

    def atlas(self, name: str) -> tuple[Atlas, ImageSet]:
        """The locality atlas of shipped model `name` over the probe set of its own task (computed once per model),
        and that probe set; gr.Error for a model trained elsewhere (no task of ours to probe)."""
        from petl_core.atlas import locality_atlas

        loaded = self.get_model(name)
        data = (loaded.card.recipe or {}).get("data")
        if not data:
            raise gr.Error(f"{name} was not trained here, so it has no probe set of its own task.")
        probe = self.probe(data)
        return self._load_once(self._atlases, name, lambda: locality_atlas(loaded.model, probe,
                                                                          loaded.card.preprocessing)), probe

    def caution(self, result: Result, weights: str | None) -> str | None:
        """How far to trust `result`'s answer (petl_core.caution: its input and confidence against the test images
        of the model's task), for a shipped model with its own weights; None where the image is like those images
        and the model is sure enough, or where there is no reference (hub models, uploaded weights)."""
        from petl_core.caution import caution, image_features, load_reference

        name = result.model_name
        if weights or name not in catalog.SHIPPED:
            return None
        if name not in self._references:  # (read once: the shipped weights do not change)
            self._references[name] = load_reference(name)
        reference, x = self._references[name], result.inputs
        if reference is None:
            return None
        model = self.get_model(name).model
        features = image_features(model, x.unsqueeze(0).to(next(model.parameters()).device))[0].cpu().numpy()
        return caution(reference, result.analysis.top5[0][0]["probability"], float(x.mean()), float(x.std()),
                       features)

    def history(self, name: str) -> dict | None:
        """The training history shipped with zoo model `name`, or None (hub models, local files); read once."""
        if name not in self._histories:
            self._histories[name] = catalog.read_history(name)
        return self._histories[name]


class QueryError(gr.Error):
    """A query the analysed patch grid has no patch for (or no query at all)."""


def parse_query(query: str | None, grid: tuple[int, int]) -> Query:
    """petl_core's query parser (cls, center or row,col, checked against the grid), its refusal as a QueryError."""
    try:
        return query_from_text(query, grid)
    except ValueError as e:
        raise QueryError(str(e)) from None


def parse_index(value, what: str, valid: list[int], optional: bool = False) -> int:
    """`value` (an int, a whole float or its text, as sliders and dropdowns send it) as one of `valid`, else a
    gr.Error naming the valid ones; with `optional`, no value (None, empty) means the first of `valid`."""
    if optional and valid and str(value).strip() in ("", "None"):
        return valid[0]
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if not valid:
        raise gr.Error(f"This model has no {what}.")
    if not math.isfinite(number) or number != int(number) or int(number) not in valid:
        span = f"{valid[0]}-{valid[-1]}" if valid == list(range(valid[0], valid[-1] + 1)) else str(valid)
        raise gr.Error(f"{what} {shorten(repr(value), 40)} does not exist here; choose one of {span}.")
    return int(number)


def training_pair(name: str | None) -> dict[str, str]:
    """The shipped ConViT and DeiT trained on the same data as model `name` (`catalog.shipped_pair`), or the default
    model's pair when `name` has none (hub models, unknown names)."""
    try:
        pair = catalog.shipped_pair(name) if isinstance(name, str) else {}
    except ValueError:
        pair = {}
    return pair or catalog.shipped_pair(catalog.DEFAULT_MODEL)
