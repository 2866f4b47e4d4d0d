"""Attention maps: every block and head for the class token or a clicked patch, and one map enlarged."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import gradio as gr
import numpy as np

from app import plots
from app.answers import ANSWERS, by_image_and_inputs, figure_output, shares
from app.queue_policy import drawn, slow
from app.service import Result, Service, parse_index, parse_query
from app.tabs.common import EACH_CHANGE, PRIVATE, Shared, export_row, learn, plot, wire_export, wire_page
from petl_core.scales import ATTENTION_LINEAR_RANGE, ATTENTION_LOG_RANGE, attention_colour_label

ATTENTION_JS = (Path(__file__).with_name("attention.js")).read_text()
"""Draws the tab in the page (installed at page load): the hover grid and the enlarged map, from
`AttentionView.hover_data`."""
GRIDS_JS = (Path(__file__).with_name("grids.js")).read_text()
"""The grids other tabs draw in the page from `maps_data` with attention.js's kit (the Training tab's, the dial's)."""

LEARN = f"""
**What you see.** Each small map is one attention head: how much the *query* (the class token, or the patch you
clicked, framed in cyan) draws from every patch of the image. Rows are blocks (layers), columns are heads. Bright =
much attention. The colour scale is logarithmic by default, as in the ConViT paper, so that weak but wide attention
stays visible; switch to linear to see only where most of the weight goes. Either way its range is fixed
({ATTENTION_LOG_RANGE[0]:g} to {ATTENTION_LOG_RANGE[1]:g} on the log scale, {ATTENTION_LINEAR_RANGE[0]:g} to
{ATTENTION_LINEAR_RANGE[1]:g} on the linear one) and the same in the grid and the enlarged map: it is never stretched
to fit a map, so attention spread evenly over P patches (1/P each) looks flat, as it is.

**What to look for.** In ConViT's first blocks (GPSA) many heads look at a small neighbourhood at a fixed offset
from the query, like the taps of a 3×3 convolution: that is the convolutional prior. A DeiT of the same size has no
such prior and starts almost uniform. ConViT has no class token in its GPSA blocks (it joins later), so a class-token
query leaves those rows blank: click a patch instead.
"""


def _draw(result: Result, query: str, layer: float, head: float, log_scale: bool) -> tuple:
    """The picture with the query framed, the grid of all blocks × heads and the enlarged map of one analysis."""
    trace = result.trace
    return (plots.picker_image(result.input_image, trace.grid, parse_query(query, trace.grid)),
            *_maps(result, query, layer, head, log_scale))


def _maps(result: Result, query: str, layer: float, head: float, log_scale: bool) -> tuple:
    """The grid of all blocks × heads and the enlarged map of one analysis."""
    from petl_core.figures import attention_grid_figure, query_maps

    trace = result.trace
    q = parse_query(query, trace.grid)
    layer = parse_index(layer, "block", list(range(len(trace.attention))))
    grid_fig = attention_grid_figure(trace, result.input_image, q, log_scale=log_scale)
    maps = query_maps(trace, layer, q)
    if maps is None:
        enlarged = plots.message_figure(f"block {layer} has no class token: click a patch to set the query")
    else:
        head = parse_index(head, "head", list(range(maps.shape[0])))
        title = f"block {layer}, head {head}: attention of the {q.label}"
        enlarged = plots.attention_heatmap(maps[head].numpy(), result.input_image, title, log_scale, q)
    return grid_fig, enlarged


def encoded(array: np.ndarray, dtype: type = np.uint8) -> str:
    """`array` as `dtype` bytes in C order (little-endian, as a page's typed arrays read them), base64."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode(
        "ascii")


def maps_data(result: Result, model: str) -> dict:
    """What a page draws attention maps of `result` from, for any query, block, head and scale: every patch query's
    attention in every block and head quantised to one byte on the fixed log range (petl_core.figures.
    attention_codes, base64), the class token's (class_token_codes, and the blocks that have one), the colour
    scales (colour_scales), and the model input at panel size as the maps' background (RGB bytes, base64)."""
    from petl_core.figures import attention_codes, class_token_codes, panel_background

    trace = result.trace
    rows, cols = trace.grid
    background, cell = panel_background(result.input_image, trace.grid)  # (as under the grid figure's panels)

    codes = attention_codes(trace)
    cls_codes, cls_blocks = class_token_codes(trace)
    return {
        "model": model, "grid": [rows, cols], "cell": cell, "blocks": codes.shape[0], "heads": codes.shape[1],
        "heads_per_block": [a.shape[1] for a in trace.attention], "codes": encoded(codes),
        "cls_codes": encoded(cls_codes), "cls_blocks": cls_blocks, "background": encoded((background * 255).round()),
        **colour_scales(),
    }


def colour_scales() -> dict:
    """The attention views' fixed colour scales, as a page draws them: the colours of the 256 codes of
    petl_core.figures.attention_codes on the log and the linear scale (RGB bytes, base64), the log range the codes
    span, each scale's label and its ticks."""
    from petl_core.figures import attention_lut, attention_norm

    return {
        "log_range": list(ATTENTION_LOG_RANGE),
        "lut_log": encoded(attention_lut(True)), "lut_linear": encoded(attention_lut(False)),
        "label_log": attention_colour_label(True), "label_linear": attention_colour_label(False),
        # (label, place along the colour bar from 0 to 1) on each fixed scale
        "ticks_log": [[f"{v:g}", float(attention_norm(True)(v))] for v in (1e-3, 1e-2, 1e-1, 1.0)],
        "ticks_linear": [[f"{v:g}", float(attention_norm(False)(v))] for v in (0.0, 0.25, 0.5, 0.75, 1.0)],
    }


class AttentionView:
    """The attention endpoints, drawn from the analyses of `service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    @shares(by_image_and_inputs)
    @drawn
    def render(self, image: str | None, model: str, weights: str | None, query: str, layer: float, head: float,
               log_scale: bool, invert: bool = True, progress: gr.Progress = gr.Progress()) -> tuple:
        """Attention of `query` ('cls' or 'row,col'): the input with the query marked, all blocks × heads (figure),
        and block `layer`, head `head` enlarged (interactive)."""
        return _draw(self.service.result_for(image, model, weights, progress, invert), query, layer, head, log_scale)

    @drawn
    def maps(self, image: str | None, model: str, weights: str | None, query: str, layer: float, head: float,
             log_scale: bool, invert: bool = True, progress: gr.Progress = gr.Progress()) -> tuple:
        """What the page's tab draws of `render` (the page frames the query itself, whichever tab is shown)."""
        return _maps(self.service.result_for(image, model, weights, progress, invert), query, layer, head, log_scale)

    @shares(by_image_and_inputs)
    def hover_data(self, image: str | None, model: str, weights: str | None, invert: bool = True,
                   progress: gr.Progress = gr.Progress()) -> str:
        """What the page needs to draw the tab for any query, block, head and scale without the server: `maps_data`
        of this analysis, as JSON."""
        return json.dumps(maps_data(self.service.result_for(image, model, weights, progress, invert), model))

    @slow
    def export(self, image: str | None, model: str, weights: str | None, query: str, layer: float, head: float,
               log_scale: bool, invert: bool = True) -> list[str]:
        """The attention view as files: the grid (PNG), the enlarged map (HTML), the maps of every block (NPZ)."""
        from petl_core.figures import query_maps

        result = self.service.result_for(image, model, weights, invert=invert)
        grid_fig, enlarged = _maps(result, query, layer, head, log_scale)
        trace = result.trace
        q = parse_query(query, trace.grid)
        arrays = {f"block{b}": m.numpy() for b in range(len(trace.attention))
                  if (m := query_maps(trace, b, q)) is not None}
        numbers = {"model": model, "query": q.text, "grid": trace.grid, "layer": layer, "head": head,
                   "npz": "block<i>: (heads, rows, cols) attention of the query to each patch"}
        return plots.export_view("attention", {"grid": grid_fig, "enlarged": enlarged}, numbers, arrays)


def build_attention_tab(shared: Shared, service: Service) -> tuple[gr.Slider, gr.Slider]:
    """The tab's layout and endpoints (/attention, /attention_data, /export_attention); returns the block and head
    sliders of the enlarged map, for the page to fit to each analysed model.

    With `shared.in_page` the page draws the tab itself from /attention_data's numbers, sent once per analysis: a
    new query, block, head or scale redraws with no server call. Without it, the server draws the grid and the
    enlarged map for each (the figures /attention answers with)."""
    view = AttentionView(service)
    with gr.Row():
        layer = gr.Slider(0, shared.max_blocks - 1, value=0, step=1, label="Block of the enlarged map",
                          elem_id="layer")
        head = gr.Slider(0, shared.max_heads - 1, value=0, step=1, label="Head of the enlarged map", elem_id="head")
    grid_title = ("Every block × head for the query, or the patch under the pointer: drawn in your browser"
                  if shared.in_page else "Hover the picture: every block × head for the patch under the pointer, "
                  "drawn in your browser")
    with gr.Accordion(grid_title, open=True):
        gr.HTML('<div id="hover-caption">Analyse an image, then move the pointer over what the model saw.</div>'
                '<canvas id="hover-canvas" width="0" height="0"></canvas>', elem_id="hover")
        hover_data = gr.Textbox(visible="hidden", elem_id="hover-data")
    if shared.in_page:
        gr.HTML('<div id="enlarged-caption">Analyse an image to see one block and head enlarged.</div>'
                '<canvas id="enlarged-canvas" width="0" height="0"></canvas>'
                '<div id="enlarged-value">Point at a cell for its attention weight.</div>',
                label="Enlarged map", elem_id="attention-enlarged")
    else:
        with gr.Row():
            grid_plot = plot("All blocks × heads", "attention-grid")
            enlarged = plot("Enlarged map", "attention-enlarged")
    export_button, files = export_row("attention", "PNG, HTML, JSON, NPZ")
    learn("reading attention maps", LEARN)
    inputs = [shared.image, shared.model, shared.weights, shared.query, layer, head, shared.log_scale, shared.invert]
    data_inputs = [shared.image, shared.model, shared.weights, shared.invert]
    gr.Button(visible=False).click(view.render, inputs, [shared.picker, figure_output(visible=False),
                                                         figure_output(visible=False)], api_name="attention")
    gr.Button(visible=False).click(view.hover_data, data_inputs, gr.Textbox(visible=False),
                                   api_name="attention_data")
    if not shared.in_page:
        wire_page(shared, "attention", [shared.analyses.change, shared.query.change, shared.log_scale.change,
                                        layer.release, head.release], view.maps, inputs, [grid_plot, enlarged],
                  "attention_page")
    wire_page(shared, "attention", [shared.analyses.change], view.hover_data, data_inputs, [hover_data], "hover_page")
    shared.warm_ups.append(lambda model, image: image and ANSWERS.answering(view.hover_data)(image, model, None, True))
    shared.demo.load(None, js=ATTENTION_JS, api_visibility="private")
    if shared.in_page:
        shared.demo.load(None, js=GRIDS_JS, api_visibility="private")
    # in the page only (no server call): at rest the grid shows the query, on the page's colour scale; the enlarged
    # map follows the query, block, head and scale
    redraw = "window.__attentionView && window.__attentionView({query, layer, head, log});"
    hover_data.change(None, [shared.query, layer, head, shared.log_scale, hover_data], None,
                      js="(query, layer, head, log, data) => { window.__hoverShowQuery && "
                         f"window.__hoverShowQuery(query, data); {redraw} }}", **EACH_CHANGE, **PRIVATE)
    shared.query.change(None, [shared.query, layer, head, shared.log_scale], None,
                        js="(query, layer, head, log) => { window.__hoverShowQuery && window.__hoverShowQuery(query);"
                           f" {redraw} }}", **EACH_CHANGE, **PRIVATE)
    shared.log_scale.change(None, [shared.query, layer, head, shared.log_scale], None,
                            js="(query, layer, head, log) => { window.__hoverRescale && window.__hoverRescale(log); "
                               f"{redraw} }}", **EACH_CHANGE, **PRIVATE)
    if shared.in_page:
        for slider in (layer, head):
            slider.change(None, [shared.query, layer, head, shared.log_scale], None,
                          js=f"(query, layer, head, log) => {{ {redraw} }}", **EACH_CHANGE, **PRIVATE)
    wire_export(shared, export_button, view.export, inputs, files, "export_attention")
    return layer, head
