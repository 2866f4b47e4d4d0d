"""GPSA decomposition: content, positional and mixed attention of each head, σ(λ), and the positional centres."""
from __future__ import annotations

import gradio as gr
import numpy as np

from app import plots
from app.answers import by_image_and_inputs, shares
from app.queue_policy import slow
from app.service import Service, parse_index, parse_query
from app.tabs.common import Shared, export_row, learn, numbers_panel, plot, wire_export, wire_view
from petl_core.query import centre_patch

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


class GpsaView:
    """The GPSA endpoints, drawn from the analyses of `service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    @shares(by_image_and_inputs)
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
        gates = trace.gate_matrix.numpy()
        centres = [(trace.centres[b].numpy(), trace.strengths[b].numpy()) for b in trace.gated_blocks]
        initial = [h.centres.cpu().numpy() for h in self.service.initial_heads(model, weights)]
        centres_fig = plots.centres_figure(centres, gates, trace.gated_blocks, trace.grid, initial)
        numbers = {"query": q.text, "blocks": trace.gated_blocks, "sigma_lambda": gates.round(4).tolist(),
                   "centres_dx_dy": [np.round(c, 4).tolist() for c, _ in centres],
                   "centres_at_init_dx_dy": [np.round(c, 4).tolist() for c in initial],
                   "strengths_alpha": [np.round(s, 4).tolist() for _, s in centres]}
        return figure, centres_fig, numbers

    @slow
    def export(self, image: str | None, model: str, weights: str | None, query: str, layer: str | float,
               log_scale: bool, invert: bool = True) -> list[str]:
        """The GPSA view as files: decomposition (PNG), centres (HTML), gates and centres (JSON)."""
        figure, centres_fig, numbers = self.render(image, model, weights, query, layer, log_scale, invert)
        return plots.export_view("gpsa", {"decomposition": figure, "centres": centres_fig},
                                 {"model": model, **numbers})


def build_gpsa_tab(shared: Shared, service: Service) -> gr.Dropdown:
    """The tab's layout and endpoints (/gpsa, /export_gpsa); returns the GPSA block dropdown, for the page to fit
    to each analysed model."""
    view = GpsaView(service)
    block = gr.Dropdown(choices=[0, 1, 2, 3], value=0, label="GPSA block", elem_id="gpsa-block",
                        allow_custom_value=True)  # the API may ask for any block of any model
    decomposition = plot("Mixed, content and positional attention per head", "gpsa-plot")
    centres = plot("Positional centres Δ_h on the patch grid (gray rings: at init)", "gpsa-centres")
    numbers = numbers_panel("Gates and centres")
    export_button, files = export_row("gpsa", "PNG, HTML, JSON")
    learn("content, position and the gate", LEARN)
    inputs = [shared.image, shared.model, shared.weights, shared.query, block, shared.log_scale, shared.invert]
    wire_view(shared, "gpsa", [shared.analyses.change, shared.query.change, shared.log_scale.change, block.input],
              view.render, inputs, [decomposition, centres, numbers], "gpsa")
    wire_export(shared, export_button, view.export, inputs, files, "export_gpsa")
    return block
