"""Through training: the user's image through the training snapshots of a shipped ConViT and of the DeiT trained on
the same data, side by side at the same step (a slider over the snapshots, or play)."""
from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np

from app import plots
from app.answers import by_image_and_inputs, figure_output, shares
from app.queue_policy import slow
from app.service import Result, Service, parse_index, parse_query, training_pair
from app.tabs.attention import maps_data
from app.tabs.common import EACH_CHANGE, PRIVATE, Shared, learn, numbers_panel, plot, wire_page
from petl_core import catalog
from petl_core.curves import GATE_AT_INIT

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from petl_core.metrics import GpsaHeads


PLAY_S = 1.5
"""Seconds between two snapshots while playing."""
SIDES = (("convit", "ConViT"), ("deit", "DeiT"))

LEARN = f"""
**Snapshots.** While a shipped model trained, its weights were saved at a few steps (fp16); step 0 is the model
before any training. Each snapshot is the same network as it was then, run on your image now: the attention maps,
the gates σ(λ), the positional centres Δ_h, the nonlocality and the top-5 are measured on it, nothing is
interpolated.

**What to watch.** At step 0 every ConViT gate is σ(1) ≈ {GATE_AT_INIT:.2f} (white on the gates' colour scale) and
the positional centres sit on the 3×3 offsets around the query (the gray rings): the convolutional initialisation.
The DeiT starts with no such prior. Play the run and see whether the ConViT's gates close (content takes over),
whether its centres move or spread, and how each model's nonlocality per block leaves its step-0 value (gray) and
its top-5 settles. The note above the plots gives this image's numbers
at the shown step, read from the snapshots.
"""


def _nearest(steps: list[int], step: int) -> int:
    """The snapshot step of `steps` closest to `step` (the earlier one on a tie)."""
    return min(steps, key=lambda s: (abs(s - step), s))


def _numbers(result: Result, steps: list[int]) -> dict:
    """What /replay returns as JSON for one snapshot analysis."""
    trace, snapshot = result.trace, result.card.get("snapshot") or {}
    return {"model": result.model_name, "step": snapshot.get("step"), "steps": steps,
            "test_accuracy": snapshot.get("test_accuracy"), "gated_blocks": trace.gated_blocks,
            "gates": trace.gate_matrix.numpy().tolist() if trace.gated_blocks else [],
            "nonlocality": [v[0].numpy().tolist() for v in result.analysis.nonlocality], "unit": "patches",
            "top5": [{"label": d["label"], "probability": d["probability"]} for d in result.analysis.top5[0]]}


def _grid_figure(result: Result, query: str) -> Figure:
    """Every block × head map of `query` (the server's drawing)."""
    from petl_core.figures import attention_grid_figure

    return attention_grid_figure(result.trace, result.input_image, parse_query(query, result.trace.grid))


def _grid_data(result: Result) -> str:
    """What the page draws every block × head map of any query from (app.tabs.attention.maps_data, with the step),
    as JSON."""
    return json.dumps({**maps_data(result, result.model_name), "step": result.card["snapshot"]["step"]})


def _views(result: Result, steps: list[int], grid: Callable[[Result], Any], first: list[GpsaHeads]) -> tuple:
    """Top-5, attention grid (`grid` of the result: a figure, or the page's data), gates, centres, nonlocality
    (against the run's first snapshot, whose GPSA heads are `first`) and the numbers."""
    from petl_core.metrics import uniform_nonlocality

    trace, name = result.trace, result.model_name
    step = result.card["snapshot"]["step"]
    if trace.gated_blocks:
        gates = trace.gate_matrix.numpy()
        centres = [(trace.centres[b].numpy(), trace.strengths[b].numpy()) for b in trace.gated_blocks]
        gates_fig = plots.gates_heatmap(gates, trace.gated_blocks, f"σ(λ) of {name} at step {step}")
        centres_fig = plots.centres_figure(centres, gates, trace.gated_blocks, trace.grid,
                                           [h.centres.cpu().numpy() for h in first], f"at step {steps[0]}")
    else:
        gates_fig = centres_fig = plots.message_figure(f"{name} has no GPSA blocks: no gates, no positional centres")
    first = step == steps[0]  # (at the first snapshot there is nothing to compare it with: one series, one label)
    nonlocality = plots.image_nonlocality_figure(
        [v[0].numpy() for v in result.analysis.nonlocality],
        None if first else [v[0].numpy() for v in result.analysis.init_nonlocality],
        f"nonlocality of {name} at step {step}", uniform_nonlocality(trace.grid),
        labels=(f"step {steps[0]}", f"step {step}"))
    top5 = {d["label"]: d["probability"] for d in result.analysis.top5[0]}
    return top5, grid(result), gates_fig, centres_fig, nonlocality, _numbers(result, steps)


def _note(results: dict[str, Result]) -> str:
    """This image's numbers at the shown step, per model, read from the snapshots' analyses."""
    lines = []
    for label, result in results.items():
        step, analysis = result.card["snapshot"]["step"], result.analysis
        now = [float(np.mean(v[0].numpy())) for v in analysis.nonlocality]
        start = [float(np.mean(v[0].numpy())) for v in analysis.init_nonlocality]
        top = analysis.top5[0][0]
        line = (f"**{label}** `{result.model_name}` at step {step}: top-1 {top['label']} "
                f"({top['probability']:.0%}); mean nonlocality per block "
                f"{' / '.join(f'{a:.2f} → {b:.2f}' for a, b in zip(start, now, strict=True))} patches "
                f"(first snapshot → this one)")
        if result.trace.gated_blocks:
            gates = result.trace.gate_matrix.numpy()
            line += (f"; mean σ(λ) per GPSA block {' / '.join(f'{g:.2f}' for g in gates.mean(-1))}, heads between "
                     f"{gates.min():.2f} and {gates.max():.2f}")
        accuracy = result.card["snapshot"].get("test_accuracy")
        lines.append(line + (f"; test accuracy then {accuracy:.1%}." if accuracy is not None else "."))
    return "\n\n".join(lines)


class ReplayView:
    """The training-replay endpoints, drawn from the snapshot analyses of `service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    @slow
    @shares(by_image_and_inputs)
    def replay(self, image: str | None, model: str, step: int | str, query: str = "center", invert: bool = True,
               progress: gr.Progress = gr.Progress()) -> tuple:
        """Zoo model `model` as it was at training snapshot `step` (gr.Error naming the snapshot steps otherwise) on
        `image`: top-5, every block × head map of `query` (figure), σ(λ) heatmap and positional centres (ConViT),
        nonlocality per layer and head against the run's first snapshot, and the numbers as JSON (step, steps,
        gates, nonlocality, top5)."""
        result = self.service.snapshot_result(image, model, step, progress, invert)
        return _views(result, self.service.snapshot_steps(model), functools.partial(_grid_figure, query=query),
                      self._first_heads(model))

    def _first_heads(self, name: str) -> list[GpsaHeads]:
        """The GPSA heads of `name`'s first training snapshot: where the shown centres started."""
        from petl_core.metrics import gpsa_heads

        return gpsa_heads(self.service.snapshot_model(name, self.service.snapshot_steps(name)[0]).model)

    def pair(self, model: str | None) -> tuple[dict[str, str], list[int], str]:
        """The ConViT and DeiT shown for `model` (those trained on its data, else the default model's pair), the
        ConViT's snapshot steps (the slider's) and a note when the pair is a stand-in."""
        return _shown_pair(model if isinstance(model, str) else None)  # (any JSON may come: keep the key hashable)

    def fit(self, model: str | None, step: int | str | None) -> tuple:
        """The slider and the step list fitted to the snapshots of `model`'s pair, playing stopped: at `step` when it
        is one of them (a shared link or the guide set it), else at the last one."""
        _, steps, _ = self.pair(model)
        if str(step) in map(str, steps):  # leave the value alone: a link may be setting it at the same time
            return gr.Slider(maximum=len(steps) - 1), gr.Dropdown(choices=steps), gr.Timer(active=False)
        return (gr.Slider(maximum=len(steps) - 1, value=len(steps) - 1),
                gr.Dropdown(choices=steps, value=steps[-1]), gr.Timer(active=False))

    def nearest(self, model: str | None, step: int) -> int:
        """The snapshot step of `model`'s pair nearest to `step`."""
        return _nearest(self.pair(model)[1], step)

    @slow
    @shares(by_image_and_inputs)
    def render(self, image: str | None, model: str | None, step: int | str, query: str, invert: bool = True,
               progress: gr.Progress = gr.Progress()) -> tuple:
        """The note, both models of `model`'s pair at snapshot `step` (the DeiT at its nearest snapshot) with the
        server's grid figures of `query`, and the step shown (playing waits for it)."""
        return self._pair_views(image, model, step, functools.partial(_grid_figure, query=query), invert, progress)

    @shares(by_image_and_inputs)
    def render_data(self, image: str | None, model: str | None, step: int | str, invert: bool = True,
                    progress: gr.Progress = gr.Progress()) -> tuple:
        """`render` with the data the page draws the grids of any query from, in place of the figures."""
        return self._pair_views(image, model, step, _grid_data, invert, progress)

    def _pair_views(self, image: str | None, model: str | None, step: int | str, grid: Callable[[Result], Any],
                    invert: bool, progress: gr.Progress) -> tuple:
        pair, steps, prefix = self.pair(model)
        if not image:
            return (gr.skip(),) * (2 + 7 * len(SIDES))
        step = parse_index(step, "snapshot step", steps)
        outputs, results = [], {}
        for key, label in SIDES:
            name = pair.get(key)
            if name is None:
                absent = plots.message_figure(f"no shipped {label} with training snapshots")
                no_grid = absent if grid is not _grid_data else ""
                outputs += [f"**{label}**: none shipped", {}, no_grid, absent, absent, absent, {}]
                continue
            own = self.service.snapshot_steps(name)
            result = self.service.snapshot_result(image, name, _nearest(own, step), progress, invert)
            results[label] = result
            shown = result.card["snapshot"]["step"]
            outputs += [f"**{label}**: `{name}` at step {shown}", *_views(result, own, grid, self._first_heads(name))]
        return (prefix + _note(results), *outputs, step)

    def step_at(self, model: str | None, index: float) -> int:
        """The snapshot step at slider position `index`."""
        _, steps, _ = self.pair(model)
        return steps[parse_index(index, "snapshot", list(range(len(steps))))]

    def index_of(self, model: str | None, step: int | str) -> int:
        """The slider position of snapshot `step` (the nearest one)."""
        _, steps, _ = self.pair(model)
        return steps.index(_nearest(steps, parse_index(step, "snapshot step", steps)))

    def play(self, image: str | None, model: str | None, step: int | str) -> tuple:
        """Start playing: from the first snapshot when at the last one."""
        if not image:
            raise gr.Error("Upload an image (or pick an example) first.")
        _, steps, _ = self.pair(model)
        at_end = str(step) == str(steps[-1])
        return (steps[0] if at_end else gr.skip()), gr.Timer(active=True)

    def advance(self, model: str | None, step: int | str, shown: int | None) -> tuple:
        """One tick of playing: the next snapshot once `step` is `shown` (drawn; a slow machine is never skipped
        over); at the last one, stop."""
        if shown is None or str(shown) != str(step):
            return gr.skip(), gr.skip()
        _, steps, _ = self.pair(model)
        following = [s for s in steps if s > parse_index(step, "snapshot step", steps)]
        if not following:
            return gr.skip(), gr.Timer(active=False)
        return following[0], (gr.Timer(active=False) if following[0] == steps[-1] else gr.skip())


def build_replay_tab(shared: Shared, service: Service) -> tuple[gr.Dropdown, ReplayView]:
    """The tab's layout and endpoints (/replay; the page's pair view is private); returns the training step control
    and the view (for links to a step)."""
    view = ReplayView(service)
    _, steps, _ = view.pair(catalog.DEFAULT_MODEL)
    with gr.Row():
        position = gr.Slider(0, len(steps) - 1, value=len(steps) - 1, step=1, label="Snapshot (drag through training)",
                             elem_id="replay-position", scale=3)
        # any value is let through to the handler, which names the valid steps (the API may send anything)
        step = gr.Dropdown(choices=steps, value=steps[-1], label="Training step", allow_custom_value=True,
                           elem_id="replay-step", scale=1)
        play = gr.Button("▶ Play", size="sm", scale=0, elem_id="replay-play")
        pause = gr.Button("⏸ Pause", size="sm", scale=0, elem_id="replay-pause")
    timer = gr.Timer(PLAY_S, active=False)
    shown = gr.State(None)  # the step the views show now
    note = gr.Markdown(elem_id="replay-note")
    sides = []
    with gr.Row(equal_height=False):
        for key, label in SIDES:
            with gr.Column():
                heading = gr.Markdown(f"**{label}**")
                top5 = gr.Label(num_top_classes=5, label="Top-5", elem_id=f"replay-{key}-top5")
                if shared.in_page:  # drawn in the page from the snapshot's attention, for any query and scale
                    gr.HTML(f'<div id="replay-{key}-caption"></div><canvas id="replay-{key}-canvas" width="0" '
                            'height="0" style="max-width:100%;height:auto"></canvas>',
                            label="Attention of the query, every block × head", elem_id=f"replay-{key}-grid")
                    grid = gr.Textbox(visible="hidden", elem_id=f"replay-{key}-data")
                else:
                    grid = plot("Attention of the query, every block × head", f"replay-{key}-grid")
                gates = plot("Gates σ(λ)", f"replay-{key}-gates")
                centres = plot("Positional centres Δ_h", f"replay-{key}-centres")
                nonlocality = plot("Nonlocality per block and head", f"replay-{key}-nonlocality")
                numbers = numbers_panel("Numbers (JSON)")
                sides.append([heading, top5, grid, gates, centres, nonlocality, numbers])
    learn("a model through its training", LEARN)
    inputs = [shared.image, shared.model, step, shared.query, shared.invert]
    outputs = [note, *sides[0], *sides[1], shown]
    if shared.in_page:  # a new query or scale redraws the grids in the page (no server call); a new step asks
        after_fit = wire_page(shared, "replay", [step.change, shared.analyses.change], view.render_data,
                              [shared.image, shared.model, step, shared.invert], outputs, "replay_page")
        grids = [side[2] for side in sides]
        for event in (*(g.change for g in grids), shared.query.change, shared.log_scale.change):
            event(None, [*grids, shared.query, shared.log_scale], None,
                  js="(convit, deit, query, log) => { window.__replayView && window.__replayView([convit, deit], "
                     "query, log); }", **EACH_CHANGE, **PRIVATE)
    else:
        after_fit = wire_page(shared, "replay", [step.change, shared.analyses.change, shared.query.change],
                              view.render, inputs, outputs, "replay_page")
    after_fit(gr.on([shared.model.change, shared.demo.load], view.fit, [shared.model, step], [position, step, timer],
                    **EACH_CHANGE, **PRIVATE))
    position.input(view.step_at, [shared.model, position], step, trigger_mode="always_last", **PRIVATE)
    step.change(view.index_of, [shared.model, step], position, **EACH_CHANGE, **PRIVATE)
    play.click(view.play, [shared.image, shared.model, step], [step, timer], **PRIVATE)
    pause.click(lambda: gr.Timer(active=False), None, timer, **PRIVATE)
    timer.tick(view.advance, [shared.model, step, shown], [step, timer], **PRIVATE)
    gr.Button(visible=False).click(view.replay, inputs, [sides[0][1], figure_output(visible=False), *sides[0][3:]],
                                   api_name="replay")
    return step, view


@functools.lru_cache(maxsize=32)  # playing asks on every tick; the shipped cards and snapshots do not change
def _shown_pair(model: str | None) -> tuple[dict[str, str], list[int], str]:
    """ReplayView.pair (read-only: shared between calls)."""
    try:
        own = catalog.shipped_pair(model) if model else {}
    except ValueError:  # (a name the zoo does not have)
        own = {}
    pair = {k: v for k, v in training_pair(model).items() if catalog.snapshot_steps(v)}
    prefix = ""
    if not own and "convit" in pair:  # a hub model or a file trained elsewhere: say whose training this is
        prefix = (f"{model} was not trained here, so it has no training to replay: these are the shipped "
                  f"{' and '.join(pair.values())} through theirs. ")
    if "convit" not in pair:
        pair = {k: v for k, v in catalog.shipped_pair(catalog.DEFAULT_MODEL).items() if catalog.snapshot_steps(v)}
        prefix = f"The models trained on {model}'s data have no training snapshots; showing {catalog.DEFAULT_MODEL}'s. "
    if "convit" not in pair:
        raise gr.Error("No shipped ConViT has training snapshots (assets/models/*/snapshots).")
    return pair, catalog.snapshot_steps(pair["convit"]), prefix
