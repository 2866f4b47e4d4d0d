"""Compare: several models on the same image, same block and query, side by side."""
from __future__ import annotations

import json

import gradio as gr
import numpy as np

from app import plots
from app.answers import ANSWERS, by_image_and_inputs, figure_output, shares
from app.queue_policy import slow
from app.service import Service, parse_index, parse_query
from app.tabs.attention import maps_data
from app.tabs.common import EACH_CHANGE, PRIVATE, Shared, export_row, learn, numbers_panel, plot, wire_export
from petl_core import catalog

LEARN = """
**Same image, same block, same query, three inductive biases.** DeiT has none beyond patching: its attention is
learned from data alone. ConViT starts convolutional (soft bias, gates can let go of it). Convpass keeps a frozen
DeiT and adds convolutions beside it (hard bias). Each row shows every head and their mean at the chosen block.
Each model sees the image through its own preprocessing (the shipped models see a grayscale crop: 48×48 for the
scenes models, 32×32 for the Fashion-MNIST ones; a patch query needs models of the same grid).
"""

DEFAULT_MODELS = ["deit_scenes", catalog.DEFAULT_MODEL, "convpass_digit_scenes"]


class CompareView:
    """The comparison endpoints, drawn from the analyses of `service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def _results(self, image: str | None, models: list[str], invert: bool, progress: gr.Progress) -> list:
        """(name, Result) of `image` through each of `models` (1 to 4 zoo names)."""
        if not isinstance(models, list) or not 1 <= len(models) <= 4:
            raise gr.Error("Choose one to four models to compare.")
        results = []
        for i, name in enumerate(models):
            progress((i + 0.5) / len(models), desc=f"tracing {name}")
            results.append((name, self.service.result_for(image, name, None, invert=invert)))
        return results

    @shares(by_image_and_inputs)
    def data(self, image: str | None, models: list[str], invert: bool = True,
             progress: gr.Progress = gr.Progress()) -> str:
        """What the page draws the comparison from, for any block, query and scale (JSON): per model (1 to 4 zoo
        names) its attention maps' data (app.tabs.attention.maps_data), top-5 and nonlocality per block and
        head."""
        return json.dumps({"models": [
            {**maps_data(result, name), "top5": result.analysis.top5[0],
             "nonlocality": [np.round(v[0].numpy(), 4).tolist() for v in result.analysis.nonlocality]}
            for name, result in self._results(image, models, invert, progress)]})

    @slow
    @shares(by_image_and_inputs)
    def render(self, image: str | None, models: list[str], layer: float, query: str, log_scale: bool,
               invert: bool = True, progress: gr.Progress = gr.Progress()) -> tuple:
        """Block `layer`, query 'cls' or 'row,col', for each of `models` (1 to 4 zoo names) as one figure, and each
        model's top-5 and nonlocality at that block."""
        results = self._results(image, models, invert, progress)
        layer = parse_index(layer, "block", list(range(max(len(r.trace.attention) for _, r in results))))
        panels, numbers = [], {}
        for name, result in results:
            trace = result.trace
            panels.append((name, trace, result.input_image, result.analysis.patch_size))
            block = min(layer, len(trace.attention) - 1)  # a shallower model shows its last block
            numbers[name] = {"top5": result.analysis.top5[0],
                             "nonlocality_per_head": result.analysis.nonlocality[block][0].tolist()}
        grids = {trace.grid for _, trace, _, _ in panels}
        q = parse_query(query, panels[0][1].grid)
        if not q.is_cls and len(grids) > 1:
            raise gr.Error("These models cut the image into different patch grids: compare them with the class "
                           "token as the query.")
        from petl_core.figures import compare_figure

        return compare_figure(panels, layer, q, log_scale), numbers

    @slow
    def export(self, image: str | None, models: list[str], layer: float, query: str, log_scale: bool,
               invert: bool = True) -> list[str]:
        """The comparison as files: the figure (PNG) and the numbers (JSON)."""
        figure, numbers = self.render(image, models, layer, query, log_scale, invert)
        return plots.export_view("compare", {"maps": figure}, {"layer": int(float(layer)), "query": query, **numbers})


def build_compare_tab(shared: Shared, service: Service) -> gr.Slider:
    """The tab's layout and endpoints (/compare, /export_compare); returns the block slider, for the page to fit to
    each analysed model."""
    view = CompareView(service)
    with gr.Row():
        names = [name for _, name in service.model_choices()]
        models = gr.Dropdown(names, value=[m for m in DEFAULT_MODELS if m in names], multiselect=True,
                             label="Models (1-4)", elem_id="compare-models")
        layer = gr.Slider(0, shared.max_blocks - 1, value=0, step=1, label="Block", elem_id="compare-layer")
        run = gr.Button("Compare", variant="primary", elem_id="compare-run", scale=0)
    if shared.in_page:  # drawn in the page from /compare_data, fetched on each press of Compare
        gr.HTML('<div id="compare-caption">Press Compare to see the models side by side.</div>'
                '<canvas id="compare-canvas" width="0" height="0"></canvas>', label="Side by side",
                elem_id="compare-plot")
        data = gr.Textbox(visible="hidden", elem_id="compare-data")
    else:
        figure = plot("Side by side", "compare-plot")
    numbers = numbers_panel("Top-5 and nonlocality at this block", "compare-numbers")
    export_button, files = export_row("compare", "PNG, JSON")
    learn("comparing inductive biases", LEARN)
    inputs = [shared.image, models, layer, shared.query, shared.log_scale, shared.invert]
    data_inputs = [shared.image, models, shared.invert]
    gr.Button(visible=False).click(view.render, inputs, [figure_output(visible=False), gr.JSON(visible=False)],
                                   api_name="compare")
    gr.Button(visible=False).click(view.data, data_inputs, gr.Textbox(visible=False), api_name="compare_data")
    shared.warm_ups.append(lambda model, image: image and ANSWERS.answering(view.data)(
        image, [m for m in DEFAULT_MODELS if m in names], True))
    if shared.in_page:
        run.click(view.data, data_inputs, data, api_visibility="private")
        # in the page only (no server call): a block, query or scale change redraws, and the numbers follow
        for event in (data.change, layer.change, shared.query.change, shared.log_scale.change):
            event(None, [data, layer, shared.query, shared.log_scale], numbers,
                  js="(data, layer, query, log) => window.__compareView ? window.__compareView(data, layer, query, "
                     "log) : null", **EACH_CHANGE, **PRIVATE)
    else:
        run.click(view.render, inputs, [figure, numbers], api_visibility="private")
    wire_export(shared, export_button, view.export, inputs, files, "export_compare")
    return layer
