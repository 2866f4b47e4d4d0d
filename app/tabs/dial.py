"""The inductive-bias dial: set a ConViT's gates σ(λ) by hand and see the attention, the prediction, the nonlocality
and the accuracy on a probe set of its own task change at once."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np

from app import plots
from app.answers import figure_output
from app.queue_policy import slow
from app.service import Dialled, Service, parse_index, parse_query
from app.tabs.common import EACH_CHANGE, PRIVATE, Shared, learn, numbers_panel, plot, quiet, wire_page, wire_view
from petl_core import catalog

DIAL_JS = (Path(__file__).with_name("dial.js")).read_text()
"""Scores the probe in the page (installed at page load) for the models whose dial graphs ship, and says which
models those are (#dial-scored-in-page, an input of /dial)."""

LEARN = """
**What the dial does.** Every head of a GPSA block mixes two attention maps,
A = (1 − σ)·softmax(QKᵀ/√d) + σ·softmax(v_pos·r). Training chose σ = σ(λ) for each head; here you choose it,
for this one call (the model itself is not changed, and no other user sees your setting). σ = 1 makes a head
purely positional: it looks at fixed offsets around the query, like a convolution. σ = 0 makes it purely
content-based, as in a ViT: setting every gate to 0 turns the ConViT's GPSA blocks into plain self-attention
with the trained weights.

**What to try.** Compare the probe accuracy (the first test images of the model's own task) as trained, all
positional and all content: how much does the trained model rely on each? Then, by hand, set one block or one head
at a time (settings add up): which blocks can lose their positional prior without harm? Watch the nonlocality of
the heads move as you turn the dial.
"""
PRESETS = ("as trained", "all positional (σ = 1)", "all content (σ = 0): a ViT", "by hand, below")
ALL_HEADS = "all heads"


class DialView:
    """The dial's endpoints, computed by `service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def gates_for(self, model: str, preset: str, block: str | float, head: str | float, sigma: float,
                  current: str | None = None, weights: str | None = None) -> str:
        """The gates JSON of a preset: null (as trained), every head at 1 or 0, or by hand: the `current` setting
        (as trained where it has none, or does not fit `model`) with head `head` (or all heads) of GPSA block
        `block` set to `sigma`, so that settings add up head by head."""
        from petl_core.dial import read_gates

        blocks, gates = self.service.checkpoint_gates(model, weights)
        if gates is None or preset in PRESETS[:3]:
            return self.preset_gates(model, preset, weights)
        heads = gates.shape[1]
        chosen = blocks.index(parse_index(block, "GPSA block", blocks, optional=True))
        try:
            setting = read_gates(current, self.service.get_model(model, weights).model)
        except ValueError:  # a setting of another model, or half typed
            setting = [None] * len(blocks)
        entry = setting[chosen] or [round(float(g), 3) for g in gates[chosen]]
        chosen_heads = (range(heads) if str(head) == ALL_HEADS
                        else [parse_index(head, "head", list(range(heads)))])
        for h in chosen_heads:
            entry[h] = round(float(sigma), 3)
        setting[chosen] = entry
        return json.dumps(setting)

    def preset_gates(self, model: str, preset: str, weights: str | None = None) -> str:
        """The gates JSON a preset starts from: every head at 1 or at 0 for the second and third, else empty (as
        trained: "by hand" starts from the model as trained, issue 30); empty for a model without gates."""
        blocks, gates = self.service.checkpoint_gates(model, weights)
        if gates is None or preset not in PRESETS[1:3]:
            return ""
        value = 1.0 if preset == PRESETS[1] else 0.0
        return json.dumps([[value] * gates.shape[1] for _ in blocks])

    def prescore(self, model: str, image: str | None = None) -> threading.Thread | None:
        """Score the probe accuracy of the presets of `model` in the background, once (Service.prescore; `image`
        is not needed: a Shared.warm_ups call)."""
        if self.service.checkpoint_gates(model)[1] is None:
            return None
        return self.service.prescore(model, [self.preset_gates(model, preset) for preset in PRESETS[:3]])

    @slow
    def dial(self, image: str | None, model: str, gates: str | None, query: str, invert: bool = True,
             scored_in_page: str | None = None, weights: str | None = None,
             progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:
        """`model` on `image` with its gates set by `gates` (JSON, per GPSA block null or a list of σ per head):
        the attention of `query` in every block and head (figure), the gates as applied (interactive), this image's
        nonlocality per head dialled vs as trained (interactive), and the numbers (JSON: gates, top5, nonlocality,
        probe_accuracy, probe_images), with a sentence on the prediction and the probe accuracy. Yields twice for a
        setting whose probe accuracy is not known yet: first without it (null), then with it; then the presets' probe
        accuracies are scored in the background (Service.prescore), once per model. `scored_in_page`: the models
        the caller's page scores itself (JSON list; app/tabs/dial.js): for those the probe is not scored here.
        `weights`: a weights file for `model` (as /analyze takes it)."""
        from petl_core.figures import attention_grid_figure

        def drawn(dialled: Dialled, in_page: bool = False) -> tuple:
            trace = dialled.analysis.trace
            grid = attention_grid_figure(trace, dialled.trained.input_image, parse_query(query, trace.grid))
            return grid, *self._plots(dialled, model), *self._described(dialled, in_page)

        if self.service.checkpoint_gates(model, weights)[1] is None:
            yield (*(plots.message_figure(no_gates(model)),) * 3, no_gates(model), {})
            return
        for dialled, in_page in self._passes(image, model, gates, invert, scored_in_page, weights):
            yield drawn(dialled, in_page)

    def dial_data(self, image: str | None, model: str, gates: str | None, invert: bool = True,
                  scored_in_page: str | None = None, weights: str | None = None) -> tuple:
        """The page's dial (it draws the grid of any query itself, app/tabs/grids.js): one pass of `image` with the
        gates set, as the maps' data (app.tabs.attention.maps_data), the gates and nonlocality plots, and, where the
        page scores the probe itself or its score is known, the sentence and the numbers (else `dial_probe`'s). A
        light call: no probe is scored here."""
        from app.tabs.attention import maps_data

        if self.service.checkpoint_gates(model, weights)[1] is None:
            return "", *(plots.message_figure(no_gates(model)),) * 2, no_gates(model), {}
        dialled = self.service.dial(image, model, gates, score=False, invert=invert, weights=weights)
        data = json.dumps(maps_data(replace(dialled.trained, analysis=dialled.analysis), model))
        in_page = not weights and model in _listed(scored_in_page)  # (the page scores the shipped weights only)
        said = (self._described(dialled, in_page) if in_page or dialled.probe_accuracy is not None
                else (gr.skip(), gr.skip()))
        return data, *self._plots(dialled, model), *said

    @slow
    def dial_probe(self, image: str | None, model: str, gates: str | None, invert: bool = True,
                   scored_in_page: str | None = None, weights: str | None = None) -> Iterator[tuple]:
        """Beside `dial_data`, for a model the page does not score: the sentence and the numbers, first without the
        probe accuracy, then with it (scored here: a heavy call). Nothing for a model the page scores."""
        if self.service.checkpoint_gates(model, weights)[1] is None or (
                not weights and model in _listed(scored_in_page)):
            yield gr.skip(), gr.skip()
            return
        for dialled, _ in self._passes(image, model, gates, invert, None, weights):
            yield self._described(dialled)

    def _passes(self, image: str | None, model: str, gates: str | None, invert: bool,
                scored_in_page: str | None, weights: str | None = None) -> Iterator[tuple[Dialled, bool]]:
        """(dialled, scored in the page): first what one forward pass of the image gives (at once), then, unless the
        page scores it or it is known, with the probe accuracy (a pass over the probe set, scored once per setting),
        after which the presets are scored in the background."""
        first = self.service.dial(image, model, gates, score=False, invert=invert, weights=weights)
        if not weights and model in _listed(scored_in_page):
            yield first, True
            return
        yield first, False
        if first.probe_accuracy is not None or not first.probe_images:
            return
        scored = self.service.dial(image, model, gates, invert=invert, weights=weights)
        if not weights:
            self.prescore(model)  # then the presets, in the background: choosing one answers at once
        yield scored, False

    @staticmethod
    def _plots(dialled: Dialled, model: str) -> tuple:
        """The gates as applied and this image's nonlocality per head, dialled vs as trained (interactive)."""
        from petl_core.metrics import uniform_nonlocality

        trace = dialled.analysis.trace
        applied = np.stack([g.numpy() for g in dialled.gates])
        return (plots.gates_heatmap(applied, trace.gated_blocks, f"σ as set on {model}"),
                plots.image_nonlocality_figure(
                    [v[0].numpy() for v in dialled.analysis.nonlocality],
                    [v[0].numpy() for v in dialled.trained.analysis.nonlocality],
                    f"nonlocality of {model} on this image", uniform_nonlocality(trace.grid),
                    labels=("as trained", "dialled")))

    @staticmethod
    def _described(dialled: Dialled, scored_in_page: bool = False) -> tuple[str, dict]:
        """The sentence on the prediction and the probe accuracy (`scored_in_page`: the page says the latter), and
        the numbers."""
        numbers = {"gates": np.stack([g.numpy() for g in dialled.gates]).round(4).tolist(),
                   "top5": dialled.analysis.top5[0],
                   "nonlocality": [np.round(v[0].numpy(), 4).tolist() for v in dialled.analysis.nonlocality],
                   "probe_accuracy": dialled.probe_accuracy, "probe_images": dialled.probe_images,
                   "trained_top5": dialled.trained.analysis.top5[0]}
        now, before = numbers["top5"][0], numbers["trained_top5"][0]
        note = (f"**Prediction** with these gates: {now['label']} ({now['probability']:.1%}); as trained: "
                f"{before['label']} ({before['probability']:.1%}).")
        if dialled.probe_accuracy is not None:
            note += (f" **Probe accuracy** with these gates: {dialled.probe_accuracy:.1%} on the first "
                     f"{dialled.probe_images} test images of its task.")
        elif dialled.probe_images and not scored_in_page:
            note += f" Scoring the {dialled.probe_images} probe images with these gates…"
        elif not dialled.probe_images:
            note += (" **No probe accuracy**: that needs labelled test images of the model's own task, and this model "
                     "was not trained here (its task is not one of ours); the maps, the prediction and the "
                     "nonlocality above are dialled all the same.")
        return note, numbers


def no_gates(model: str) -> str:
    return f"{model} has no GPSA blocks: the dial is for ConViT models."


def _listed(models: str | None) -> list:
    """The model names of a JSON list (anything else: none)."""
    try:
        value = json.loads(models) if isinstance(models, str) and len(models) < 2_000 else []
    except ValueError:
        return []
    return [m for m in value if isinstance(m, str)] if isinstance(value, list) else []


def build_dial_tab(shared: Shared, service: Service) -> None:
    """The tab's layout and its endpoint /dial."""
    view = DialView(service)
    with gr.Row():
        preset = gr.Radio(list(PRESETS), value=PRESETS[0], label="Gates", elem_id="dial-preset", scale=3)
        block = gr.Dropdown(choices=[0, 1, 2, 3], value=0, label="GPSA block", elem_id="dial-block",
                            allow_custom_value=True, scale=1)
        head = gr.Dropdown(choices=[ALL_HEADS, *range(shared.max_heads)], value=ALL_HEADS, label="Head",
                           elem_id="dial-head", allow_custom_value=True, scale=1)
        sigma = gr.Slider(0, 1, value=0.0, step=0.05, label="σ of that head (or of every head of that block)",
                          elem_id="dial-sigma", scale=2)
    gates = gr.Textbox("", label="Gates as JSON (per GPSA block: null = as trained, or one σ per head); edit freely",
                       elem_id="dial-gates", lines=2, max_length=20_000)
    caption = "Attention of the query with the gates as set, every block and head"
    if shared.in_page:  # drawn in the page from the dialled pass's attention, for any query and scale
        gr.HTML('<div id="dial-caption"></div><canvas id="dial-canvas" width="0" height="0" '
                'style="max-width:100%;height:auto"></canvas>', label=caption, elem_id="dial-grid")
        grid = gr.Textbox(visible="hidden", elem_id="dial-data")
    else:
        grid = plot(caption, "dial-grid")
    with gr.Row():
        gates_plot = plot("σ as set", "dial-gates-plot")
        nonlocality = plot("Nonlocality on this image: dialled vs as trained", "dial-nonlocality")
    note = gr.Markdown(elem_id="dial-note")
    gr.HTML('<p id="dial-page-score" aria-live="polite"></p>', padding=False)  # (app/tabs/dial.js writes here)
    scored_in_page = gr.Textbox("", visible="hidden", elem_id="dial-scored-in-page")
    numbers = numbers_panel("Numbers")
    learn("the inductive-bias dial", LEARN)
    # a preset (or a new model) sets the gates; by hand, each block, head or σ change adds to them
    gr.on([preset.input, shared.model.change], quiet(view.preset_gates, 1), [shared.model, preset, shared.weights],
          gates, **PRIVATE, **EACH_CHANGE)
    gr.on([block.input, head.input, sigma.release], quiet(view.gates_for, 1),
          [shared.model, preset, block, head, sigma, gates, shared.weights], gates, **PRIVATE, **EACH_CHANGE)
    shared.warm_ups.append(view.prescore)
    if shared.in_page:
        graphs = [name for name in catalog.BROWSER_MODELS if catalog.dial_graphs_manifest(name) is not None]
        shared.demo.load(None, js=DIAL_JS.replace("__MODELS__", json.dumps(graphs)), **PRIVATE)
        # (before the view's own listener: the page says which models it scores before the server is asked)
        gr.on([gates.change, shared.model.change, shared.tab.change, *shared.changes([shared.weights])], None,
              [shared.tab, shared.model, gates, shared.weights, scored_in_page], scored_in_page,
              js="(tab, model, gates, weights, scored) => window.__dialPage ? window.__dialPage.update(tab, model, "
                 "gates, weights) : scored", **EACH_CHANGE, **PRIVATE)
    inputs = [shared.image, shared.model, gates, shared.query, shared.invert, scored_in_page, shared.weights]
    if not shared.in_page:
        wire_view(shared, "dial", [gates.change, shared.analyses.change, shared.query.change], view.dial, inputs,
                  [grid, gates_plot, nonlocality, note, numbers], "dial")
        return
    gr.Button(visible=False).click(view.dial, inputs,
                                   [figure_output(visible=False), gates_plot, nonlocality, note, numbers],
                                   api_name="dial")
    # the page draws the grid of any query itself: a change of the gates is one light pass here, and, for a model
    # the page does not score, the probe scored in the heavy lane beside it
    data_inputs = [shared.image, shared.model, gates, shared.invert, scored_in_page, shared.weights]
    wire_page(shared, "dial", [gates.change, shared.analyses.change], view.dial_data, data_inputs,
              [grid, gates_plot, nonlocality, note, numbers], "dial_page")
    wire_page(shared, "dial", [gates.change, shared.analyses.change], view.dial_probe, data_inputs, [note, numbers],
              "dial_probe_page", drawn_in_page="window.__dialPage && window.__dialPage.scores(model)")
    for event in (grid.change, shared.query.change, shared.log_scale.change):
        event(None, [grid, shared.query, shared.log_scale], None,
              js="(data, query, log) => { window.__dialView && window.__dialView(data, query, log); }",
              **EACH_CHANGE, **PRIVATE)
