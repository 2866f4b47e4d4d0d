"""GPSA decomposition: content, positional and mixed attention of each head, σ(λ), and the positional centres."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np

from app import plots
from app.answers import ANSWERS, by_image_and_inputs, figure_output, shares
from app.queue_policy import drawn, slow
from app.service import Result, Service, parse_index, parse_query
from app.tabs.attention import colour_scales, encoded
from app.tabs.common import (
    EACH_CHANGE,
    PRIVATE,
    Shared,
    export_row,
    learn,
    numbers_panel,
    plot,
    wire_export,
    wire_page,
)
from petl_core.query import centre_patch

GPSA_JS = (Path(__file__).with_name("gpsa.js")).read_text()
"""Draws the decomposition in the page (installed at page load) from `GpsaView.data`."""

LEARN = """
**Gated positional self-attention (GPSA).** Each head of ConViT's first blocks mixes two attention maps:
*content* attention, softmax(QKᵀ/√d), which depends on what the patches contain (as in any ViT), and *positional*
attention, softmax(v_pos·r_ij), which depends only on where key j sits relative to query i (r_ij = (dx, dy, dx²+dy²)).
The head's gate σ(λ) sets the mix: A = (1−σ(λ))·content + σ(λ)·positional. σ(λ) = 1 is a pure positional head,
0 a pure content head.

**Positional centres.** Each head's positional attention is a bump centred at an offset Δ_h from the query: at
initialisation the 9 heads sit on the 3×3 offsets around the query, so together they act like a 3×3 convolution
(the paper's "convolutional initialisation"); the gray rings are those initial centres, read from the same
architecture at initialisation, and a line joins each to where its head is now. The bigger the marker, the sharper
(more local) the bump (strength α); its colour is the head's gate, white where it is still at its initial value.
Training may move the centres, flatten the bumps or close the gates: that is the "soft" inductive bias.

**What to look for.** The positional row is the same for every image: it is the model's built-in prior. Compare it
with the content row, which changes with the image, and read the gate above each head to see which one wins.
"""


def gpsa_data(result: Result, pos_proj: list[tuple[np.ndarray, np.ndarray]], model: str) -> dict:
    """What a page computes and draws every GPSA head's mixed, content and positional attention from, for any
    query: per GPSA block the queries and keys (float32, base64, (heads, patches, d) each: content =
    softmax(q·kᵀ·scale)), the positional projection `pos_proj` ((heads, 3) weight and (heads,) bias of v_pos·r_ij
    + b, r_ij = (dx, dy, dx²+dy²) from query i to key j) and the gates σ(λ) it mixes with; the model input as in
    `maps_data` (drawn beside the maps, never under them); the colours of the numbered key markers (the equation's);
    the colour scales (app.tabs.attention.colour_scales).
    Empty `blocks` for a model without GPSA."""
    from petl_core.figures import KEY_COLOURS, panel_background

    trace = result.trace
    blocks = []
    for b, (weight, bias) in zip(trace.gated_blocks, pos_proj, strict=True):
        queries, keys = trace.queries[b][0], trace.keys[b][0]  # (H, N, d)
        blocks.append({"block": b, "gates": trace.gates[b].tolist(), "pos_weight": weight.tolist(),
                       "pos_bias": bias.tolist(), "queries": encoded(queries.float().numpy(), np.float32),
                       "keys": encoded(keys.float().numpy(), np.float32)})
    first = trace.queries[trace.gated_blocks[0]] if trace.gated_blocks else None
    background, cell = panel_background(result.input_image, trace.grid)
    return {"model": model, "grid": list(trace.grid), "blocks": blocks,
            "background": encoded((background * 255).round()), "background_cell": cell,
            "key_colours": list(KEY_COLOURS),
            "heads": int(first.shape[1]) if first is not None else 0,
            "head_dim": int(first.shape[-1]) if first is not None else 0,
            "scale": float(first.shape[-1]) ** -0.5 if first is not None else None, **colour_scales()}


class GpsaView:
    """The GPSA endpoints, drawn from the analyses of `service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    @shares(by_image_and_inputs)
    @drawn
    def render(self, image: str | None, model: str, weights: str | None, query: str, layer: str | float,
               log_scale: bool, invert: bool = True, progress: gr.Progress = gr.Progress()) -> tuple:
        """For GPSA block `layer`: mixed, content and positional attention of `query` per head with σ(λ) (figure),
        the positional centres of every GPSA block over those of the model at init (interactive), and the gates and
        centres as numbers."""
        from petl_core.figures import attention_layer_figure

        result = self.service.result_for(image, model, weights, progress, invert)
        trace = result.trace
        if not trace.gated_blocks:
            note = f"{model} has no GPSA blocks: this view is for ConViT models"
            return plots.message_figure(note), plots.message_figure(note), {}
        q = parse_query(query, trace.grid)
        if q.is_cls:  # GPSA blocks come before the class token joins: use the centre patch
            q = centre_patch(trace.grid)
        block = parse_index(layer, "GPSA block", trace.gated_blocks, optional=True)
        figure = attention_layer_figure(trace, block, result.input_image, q, log_scale=log_scale)
        centres_fig, numbers = self._centres(trace, model, weights)
        return figure, centres_fig, {"query": q.text, **numbers}

    @shares(by_image_and_inputs)
    def data(self, image: str | None, model: str, weights: str | None, invert: bool = True,
             progress: gr.Progress = gr.Progress()) -> str:
        """What the page needs to draw the decomposition for any query, block and scale without the server:
        `gpsa_data` of this analysis, as JSON."""
        result = self.service.result_for(image, model, weights, progress, invert)
        loaded = self.service.get_model(model, weights).model
        pos_proj = [(loaded.blocks[b].attn.pos_proj.weight.detach().float().cpu().numpy(),
                     loaded.blocks[b].attn.pos_proj.bias.detach().float().cpu().numpy())
                    for b in result.trace.gated_blocks]
        return json.dumps(gpsa_data(result, pos_proj, model))

    @shares(by_image_and_inputs)
    def centres(self, image: str | None, model: str, weights: str | None, invert: bool = True,
                progress: gr.Progress = gr.Progress()) -> tuple:
        """What no query changes: the positional centres of every GPSA block over those at init (interactive), and
        the gates and centres as numbers."""
        trace = self.service.result_for(image, model, weights, progress, invert).trace
        if not trace.gated_blocks:
            return plots.message_figure(f"{model} has no GPSA blocks: this view is for ConViT models"), {}
        return self._centres(trace, model, weights)

    def _centres(self, trace, model: str, weights: str | None) -> tuple:
        gates = trace.gate_matrix.numpy()
        centres = [(trace.centres[b].numpy(), trace.strengths[b].numpy()) for b in trace.gated_blocks]
        initial = [h.centres.cpu().numpy() for h in self.service.initial_heads(model, weights)]
        centres_fig = plots.centres_figure(centres, gates, trace.gated_blocks, trace.grid, initial)
        numbers = {"blocks": trace.gated_blocks, "sigma_lambda": gates.round(4).tolist(),
                   "centres_dx_dy": [np.round(c, 4).tolist() for c, _ in centres],
                   "centres_at_init_dx_dy": [np.round(c, 4).tolist() for c in initial],
                   "strengths_alpha": [np.round(s, 4).tolist() for _, s in centres]}
        return centres_fig, numbers

    @slow
    def export(self, image: str | None, model: str, weights: str | None, query: str, layer: str | float,
               log_scale: bool, invert: bool = True) -> list[str]:
        """The GPSA view as files: decomposition (PNG), centres (HTML), gates and centres (JSON)."""
        figure, centres_fig, numbers = self.render(image, model, weights, query, layer, log_scale, invert)
        return plots.export_view("gpsa", {"decomposition": figure, "centres": centres_fig},
                                 {"model": model, **numbers})


def build_gpsa_tab(shared: Shared, service: Service) -> gr.Dropdown:
    """The tab's layout and endpoints (/gpsa, /gpsa_data, /export_gpsa); returns the GPSA block dropdown, for the
    page to fit to each analysed model.

    With `shared.in_page` the page computes and draws the decomposition itself from /gpsa_data's queries, keys and
    positional projections, sent once per analysis: a new query, block or scale redraws with no server call; the
    centres, which no query changes, come once per analysis. Without it, the server draws both for each change."""
    view = GpsaView(service)
    block = gr.Dropdown(choices=[0, 1, 2, 3], value=0, label="GPSA block", elem_id="gpsa-block",
                        allow_custom_value=True)  # the API may ask for any block of any model
    if shared.in_page:
        gr.HTML('<div id="gpsa-caption">Analyse an image with a ConViT to see its GPSA heads.</div>'
                '<canvas id="gpsa-canvas" width="0" height="0" style="max-width:100%;height:auto"></canvas>'
                '<div id="gpsa-value">Point at a map for its weight.</div>',
                label="Mixed, content and positional attention per head", elem_id="gpsa-plot")
        data = gr.Textbox(visible="hidden", elem_id="gpsa-data")
    else:
        decomposition = plot("Mixed, content and positional attention per head", "gpsa-plot")
    centres = plot("Positional centres Δ_h on the patch grid (gray rings: at init)", "gpsa-centres")
    numbers = numbers_panel("Gates and centres")
    export_button, files = export_row("gpsa", "PNG, HTML, JSON")
    learn("content, position and the gate", LEARN)
    inputs = [shared.image, shared.model, shared.weights, shared.query, block, shared.log_scale, shared.invert]
    data_inputs = [shared.image, shared.model, shared.weights, shared.invert]
    gr.Button(visible=False).click(view.render, inputs, [figure_output(visible=False), figure_output(visible=False),
                                                         gr.JSON(visible=False)], api_name="gpsa")
    gr.Button(visible=False).click(view.data, data_inputs, gr.Textbox(visible=False), api_name="gpsa_data")
    if shared.in_page:
        wire_page(shared, "gpsa", [shared.analyses.change], view.data, data_inputs, [data], "gpsa_data_page")
        wire_page(shared, "gpsa", [shared.analyses.change], view.centres, data_inputs, [centres, numbers],
                  "gpsa_centres_page")
        for answer in (view.data, view.centres):
            shared.warm_ups.append(lambda model, image, answer=answer: image and ANSWERS.answering(answer)(
                image, model, None, True))
        shared.demo.load(None, js=GPSA_JS, api_visibility="private")
        # in the page only (no server call): a new query, block or scale redraws the decomposition
        for event in (data.change, shared.query.change, block.change, shared.log_scale.change):
            event(None, [data, shared.query, block, shared.log_scale], None,
                  js="(data, query, block, log) => { window.__gpsaView && window.__gpsaView(data, query, block, "
                     "log); }", **EACH_CHANGE, **PRIVATE)
    else:
        wire_page(shared, "gpsa", [shared.analyses.change, shared.query.change, shared.log_scale.change,
                                   block.input], view.render, inputs, [decomposition, centres, numbers], "gpsa_page")
    wire_export(shared, export_button, view.export, inputs, files, "export_gpsa")
    return block
