"""Convpass bypasses: where each bypass acts on the image, its share of the update, its conv channels."""
from __future__ import annotations

import gradio as gr
import numpy as np

from app import plots
from app.answers import ANSWERS, by_image_and_inputs, shares
from app.guard import shorten
from app.queue_policy import drawn, slow
from app.service import Result, Service, parse_index
from app.tabs.common import Shared, export_row, learn, numbers_panel, plot, wire_export, wire_view
from petl_core import catalog
from petl_core.cards import ModelCard
from petl_core.query import CLS

LEARN = """
**Convpass** adapts a frozen, pretrained ViT to a new task by adding small trainable *bypasses* beside each block's
attention and MLP: 1×1 down-projection to a few channels, a 3×3 convolution over the patch grid, 1×1
up-projection, scaled by s and added to the block's update. Only the bypasses (and the head) train: {trainable}.
The paper's "under 0.5%" is for its ViT-B (86 M parameters, bypasses of 8 channels); the small backbones shipped
here make the bypasses a larger part. The 3×3 convolution is a *hard* convolutional bias: unlike a GPSA gate, it
cannot be switched off, only weighted.

**What you see.** For the chosen block: ‖s·bypass‖ per patch (where the bypass writes most), its ratio to the frozen
branch beside it (where the adaptation matters most relative to the backbone), and, next to them, the class token's
attention in that block (mean of heads), which the frozen backbone still computes. Below: that ratio per block,
averaged over the patches (a ratio of norms, not a share: above 1 the bypass writes more than the frozen branch),
and the output channels of the bypass's 3×3 convolution.

The shipped Convpass models adapt a frozen DeiT trained on clothes to digits: `convpass_digit_scenes` (digits on
textures, among pieces of other digits; try the digit-scene examples) and `convpass_digits` (plain handwritten
digits; try a digit sketch). Their cards say which backbone each adapts.
"""


def learn_text() -> str:
    """LEARN with the trainable parameters of each shipped Convpass model, read from its card."""
    counts = []
    for name, family in catalog.SHIPPED.items():
        try:
            parameters = ModelCard.load(catalog.ASSETS / name).parameters if family == "convpass" else None
        except (OSError, ValueError, KeyError):  # (a model not shipped in this copy)
            parameters = None
        if parameters:
            trainable, total = parameters["trainable"], parameters["total"]
            counts.append(f"`{name}` {trainable:,} of {total:,} parameters ({trainable / total:.1%})")
    return LEARN.format(trainable="; ".join(counts) if counts else "the shipped models' cards say how many")


def _draw(result: Result, block: str | float, branch: str) -> tuple:
    """Bypass maps (figure), mean ‖s·bypass‖ / ‖frozen branch‖ per block (interactive), conv channels (figure), the
    numbers and the maps as arrays of Convpass block `block` and `branch` ('attn' or 'mlp') in one analysis."""
    from petl_core.figures import conv_channels_figure, maps_row_figure
    from petl_core.metrics import attention_map, bypass_maps

    trace = result.trace
    blocks = [i for i, entry in enumerate(trace.bypass) if entry]
    if not blocks:
        shipped = [name for name, family in catalog.SHIPPED.items() if family == "convpass"]
        note = f"{result.model_name} has no Convpass bypasses: choose {' or '.join(shipped)} (or a Convpass checkpoint)"
        return plots.message_figure(note), plots.message_figure(note), plots.message_figure(note), {}, {}
    b = parse_index(block, "block with a bypass", blocks, optional=True)
    maps = bypass_maps(trace.bypass[b], trace.grid, trace.num_prefix[b])
    if branch not in maps:
        raise gr.Error(f"block {b} has no {shorten(repr(branch), 40)} bypass (this model adapts: {', '.join(maps)})")
    chosen = maps[branch]
    panels = {"‖s·bypass‖ per patch": chosen.norm[0], "‖s·bypass‖ / ‖frozen branch‖": chosen.ratio[0]}
    prefix = trace.num_prefix[b]
    if prefix:
        panels["frozen attention: class token (mean of heads)"] = attention_map(
            trace.attention[b][0], trace.grid, CLS, prefix).mean(dim=0)
    figure = maps_row_figure(panels, result.input_image, f"block {b}, {branch} bypass")
    summary = result.analysis.summary()["bypass_mean_per_block"]
    channels = conv_channels_figure(chosen.conv[0], f"block {b}, {branch} bypass: 3×3 conv output channels")
    numbers = {"block": b, "branch": branch, "mean_per_block": summary,
               "norm": np.round(chosen.norm[0].numpy(), 5).tolist(),
               "ratio": np.round(chosen.ratio[0].numpy(), 5).tolist()}
    arrays = {f"{name}_{part}": getattr(m, part)[0].numpy() for name, m in maps.items()
              for part in ("norm", "ratio", "conv")}
    return figure, plots.bypass_ratio_figure(summary), channels, numbers, arrays


class ConvpassView:
    """The Convpass endpoints, drawn from the analyses of `service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    @shares(by_image_and_inputs)
    @drawn
    def render(self, image: str | None, model: str, weights: str | None, block: str | float, branch: str,
               invert: bool = True, progress: gr.Progress = gr.Progress()) -> tuple:
        """For Convpass block `block` and `branch` ('attn' or 'mlp'): bypass norm, bypass/frozen ratio and the
        frozen attention of the class token over the image (figure), the mean ratio per block (interactive), the
        conv channels (figure) and the numbers."""
        return _draw(self.service.result_for(image, model, weights, progress, invert), block, branch)[:4]

    def warm(self, model: str, image: str | None) -> None:
        """Every block and branch of the shipped Convpass `model` on the guided path's example `image`, put in the
        shared answers (a Shared.warm_ups call): a class opens the same example, each student at the block and
        branch they pick, and those figures are drawn on the server."""
        if not image or catalog.SHIPPED.get(model) != "convpass":
            return
        where = ModelCard.load(catalog.ASSETS / model).convpass["where"]
        render = ANSWERS.answering(self.render)
        for block in range(catalog.dimensions(model)[0]):
            for branch in ("attn", "mlp") if where == "both" else (where,):
                render(image, model, None, block, branch, True)

    @slow
    def export(self, image: str | None, model: str, weights: str | None, block: str | float,
               branch: str, invert: bool = True) -> list[str]:
        """The bypass view as files: maps and channels (PNG), ratios per block (HTML), numbers (JSON), conv channels
        (NPZ)."""
        figure, ratios, channels, numbers, arrays = _draw(
            self.service.result_for(image, model, weights, invert=invert), block, branch)
        return plots.export_view("convpass", {"maps": figure, "ratio": ratios, "channels": channels},
                                 {"model": model, **numbers}, arrays)


def build_convpass_tab(shared: Shared, service: Service) -> gr.Dropdown:
    """The tab's layout and endpoints (/bypass, /export_bypass); returns the block dropdown, for the page to fit to
    each analysed model."""
    view = ConvpassView(service)
    with gr.Row():
        block = gr.Dropdown(choices=list(range(6)), value=0, label="Block", elem_id="bypass-block",
                            allow_custom_value=True)
        branch = gr.Radio(["attn", "mlp"], value="attn", label="Bypass beside", elem_id="bypass-branch")
    maps = plot("Bypass maps, beside the image", "bypass-maps")
    with gr.Row():
        share = plot("‖s·bypass‖ / ‖frozen branch‖ per block (mean over patches)", "bypass-share")
        channels = plot("Conv channels", "bypass-channels")
    numbers = numbers_panel("Numbers")
    export_button, files = export_row("convpass", "PNG, HTML, JSON, NPZ")
    learn("convolutional bypasses", learn_text())
    inputs = [shared.image, shared.model, shared.weights, block, branch, shared.invert]
    wire_view(shared, "bypass", [shared.analyses.change, block.input, branch.input], view.render, inputs,
              [maps, share, channels, numbers], "bypass")
    wire_export(shared, export_button, view.export, inputs, files, "export_bypass")
    shared.warm_ups.append(view.warm)
    return block
