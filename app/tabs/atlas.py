"""Locality atlas: the nonlocality of every block and head on each probe image, the ConViT next to the DeiT trained on
the same data, as distributions; clicking a point (or typing its number) loads that probe image into the page."""
from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr
import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from app import plots, scratch
from app.answers import ANSWERS, by_inputs, figure_output, shares
from app.queue_policy import slow
from app.service import Service, parse_index
from app.tabs.common import EACH_CHANGE, PRIVATE, Shared, learn, numbers_panel
from petl_core import catalog

if TYPE_CHECKING:
    from petl_core.atlas import Atlas

SIDES = (("convit", "ConViT"), ("deit", "DeiT"))
SLOT = 0.8
"""Width of one block's group of boxes on the x axis (blocks are 1 apart)."""

LEARN = """
**What a point is.** One probe image (a fixed test image of the task both models learnt) seen by one head of one
block: its nonlocality, the attention-weighted distance between query and key patches averaged over the queries, in
patches. Each box is a head's distribution over the probe images (median, quartiles, whiskers from the lowest to the
highest value); the colours are the heads. A cross marks an image the model classifies wrong.

**What to look for.** A head whose box is narrow looks equally far on every image: its reach is fixed, as a
convolution's is, whatever the content. A wide box means the head adapts its reach to the image. Compare the
ConViT's GPSA blocks (shaded) with the same blocks of the DeiT, and look for images far from their box: click one to
load it above and see, in the other views, where its heads look. Click a head in the legend to hide it,
double-click to show it alone.
"""

# Plotly's click event never reaches the server through gr.Plot: this binds a listener to the atlas plot (again
# whenever Gradio redraws it into a fresh plotly div) that writes the clicked image's number into the hidden
# #atlas-pick box, whose change event loads the image. (Gradio's own input event ignores scripted typing.) The same
# number again gets a trailing space, so a second click on a point still changes the box.
CLICK_JS = """
() => {
    if (window.atlasClicks) return;
    window.atlasClicks = true;
    const bind = () => {
        for (const plot of document.querySelectorAll('#atlas-plot .js-plotly-plot')) {
            if (!plot.on || plot.atlasOn === plot.on) continue;
            plot.atlasOn = plot.on;
            plot.on('plotly_click', (event) => {
                const index = event.points?.[0]?.customdata?.[0];
                const box = document.querySelector('#atlas-pick textarea, #atlas-pick input');
                if (!Number.isInteger(index) || !box) return;  // a box, not an image
                box.value = box.value === String(index) ? `${index} ` : String(index);
                box.dispatchEvent(new Event('input', {bubbles: true}));
            });
        }
    };
    new MutationObserver(bind).observe(document.body, {childList: true, subtree: true});
    bind();
}
"""


def _offsets(heads: int) -> np.ndarray:
    """(heads,) x offsets of each head's box within its block's slot."""
    return (np.arange(heads) - (heads - 1) / 2) * SLOT / heads


def _figure(atlases: dict[str, tuple[str, Atlas]]) -> go.Figure:
    """One panel per model (label: (name, atlas)), y shared: per block, one box per head over the probe images, and
    every image as a jittered point (a cross where the model is wrong) whose hover names it."""
    fig = make_subplots(rows=1, cols=len(atlases), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"{label}: {name}, {atlas.correct.float().mean().item():.1%} of the probe "
                                        f"images right" for label, (name, atlas) in atlases.items()])
    rng = np.random.default_rng(0)  # the same jitter on every draw
    for col, (_, atlas) in enumerate(atlases.values(), start=1):
        values = atlas.nonlocality.numpy()  # (B, L, H)
        images, layers, heads = values.shape
        width = SLOT / heads
        index = np.arange(images)
        wrong = (~atlas.correct).numpy()
        truth = [atlas.classes[i] for i in atlas.labels.tolist()]
        guess = [atlas.classes[i] for i in atlas.predictions.tolist()]
        for h, offset in enumerate(_offsets(heads)):
            colour = qualitative.Dark24[h % len(qualitative.Dark24)]
            centre = np.arange(layers) + offset  # at the block index, as every view numbers blocks
            x = np.repeat(centre, images)  # block-major, images within
            y = values[:, :, h].T.reshape(-1)
            # the boxes from their statistics, not the 256 values again (the figure travels to every page)
            low, q1, median, q3, high = np.quantile(values[:, :, h], [0, 0.25, 0.5, 0.75, 1], axis=0)
            fig.add_trace(go.Box(x=centre, lowerfence=low, q1=q1, median=median, q3=q3, upperfence=high,
                                 width=width * 0.8, hoverinfo="skip", name=f"head {h}", legendgroup=f"head {h}",
                                 showlegend=False, marker={"color": colour}, line={"width": 1},
                                 fillcolor="rgba(0,0,0,0)"), row=1, col=col)
            fig.add_trace(go.Scatter(
                x=(x + rng.uniform(-0.35, 0.35, x.shape) * width).astype(np.float32), y=y, mode="markers",
                name=f"head {h}", legendgroup=f"head {h}", showlegend=col == 1,
                # plotly's symbol numbers (4: a cross, 0: a circle) keep the figure small
                marker={"color": colour, "size": 4, "opacity": 0.55, "symbol": np.tile(np.where(wrong, 4, 0), layers)},
                customdata=[[int(i), truth[i], guess[i], block] for block in range(layers) for i in index],
                hovertemplate="image #%{customdata[0]}: true %{customdata[1]}, predicted %{customdata[2]}<br>"
                              f"block %{{customdata[3]}}, head {h}: %{{y:.2f}} patches<extra></extra>"),
                row=1, col=col)
        if atlas.gated_blocks:
            fig.add_vrect(x0=min(atlas.gated_blocks) - 0.5, x1=max(atlas.gated_blocks) + 0.5, fillcolor="#888",
                          opacity=0.1, line_width=0, annotation_text="GPSA", annotation_position="top left",
                          row=1, col=col)
        fig.update_xaxes(title="block", tickvals=list(range(layers)), range=[-0.5, layers - 0.5], row=1,
                         col=col)
    fig.update_yaxes(title="nonlocality (patches)", row=1, col=1)
    fig.update_layout(height=520, margin={"t": 60}, hovermode="closest", legend_title_text="colour: head",
                      legend={"itemclick": "toggle", "itemdoubleclick": "toggleothers"})
    return fig


def _summary(name: str, atlas: Atlas) -> dict:
    """One model's atlas as JSON: per block (its index in model.blocks, as in the figure) and head the median,
    quartiles and the value of each probe image."""
    values = atlas.nonlocality.numpy()
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75], axis=0)  # (L, H) each
    return {"name": name, "probe_accuracy": round(atlas.correct.float().mean().item(), 4),
            "gated_blocks": atlas.gated_blocks, "predictions": atlas.predictions.tolist(),
            "blocks": [{"block": layer, "gpsa": layer in atlas.gated_blocks,
                        "heads": [{"head": h, "median": round(float(median[layer, h]), 4),
                                   "q1": round(float(q1[layer, h]), 4), "q3": round(float(q3[layer, h]), 4),
                                   "values": np.round(values[:, layer, h], 4).tolist()}
                                  for h in range(values.shape[2])]}
                       for layer in range(values.shape[1])]}


def _has_pair(model: str | None) -> bool:
    """Whether `model` has a shipped ConViT or DeiT trained on its own data (else the atlas shows a stand-in)."""
    try:
        return isinstance(model, str) and bool(catalog.shipped_pair(model))
    except ValueError:
        return False


class AtlasView:
    """The atlas endpoints, from the atlases `service` computes once per model."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def _atlases(self, model: str | None) -> tuple[dict[str, tuple[str, Atlas]], str]:
        """The atlases of the ConViT and the DeiT trained on `model`'s data (else the default model's pair), by
        label, and a sentence when the pair is a stand-in."""
        pair = self.service.atlas_pair(model)
        prefix = "" if _has_pair(model) else f"{model} has no ConViT or DeiT of its task shipped: showing those of " \
                                              f"{catalog.DEFAULT_MODEL}. "
        missing = [f"no shipped {label} for this task. " for key, label in SIDES if key not in pair]
        atlases = {label: (pair[key], self.service.atlas(pair[key])[0]) for key, label in SIDES if key in pair}
        return atlases, prefix + "".join(missing)

    @slow
    @shares(by_inputs)
    def atlas(self, model: str | None, progress: gr.Progress = gr.Progress()) -> tuple[go.Figure, dict]:
        """The ConViT and the DeiT trained on `model`'s data on the probe set of their task: nonlocality per block
        and head over the probe images (figure), and as JSON per model, block and head the median, quartiles and
        each image's value (patches), with the images' labels and each model's predictions."""
        progress(0.1, desc="tracing the probe set (once per model)")
        atlases, _ = self._atlases(model)
        if not atlases:
            return plots.message_figure("no shipped ConViT or DeiT for this model's task"), {}
        first = next(iter(atlases.values()))[1]
        numbers = {"unit": "patches", "probe_images": len(first.labels), "classes": first.classes,
                   "labels": first.labels.tolist(),
                   "models": {label: _summary(name, atlas) for label, (name, atlas) in atlases.items()}}
        return _figure(atlases), numbers

    @slow
    def show(self, model: str | None, tab: str, progress: gr.Progress = gr.Progress()) -> tuple:
        """The figure, numbers, note and image-number box of `atlas` and `fit`, when the atlas tab is the one shown;
        else nothing (the page draws it when the tab is opened)."""
        if tab != "atlas":
            return (gr.skip(),) * 4
        return (*ANSWERS.answering(self.atlas)(model, progress), *self.fit(model))

    def fit(self, model: str | None) -> tuple:
        """The note under the plot (the numbers of the models shown) and the image-number box fitted to the probe
        set."""
        atlases, prefix = self._atlases(model)
        if not atlases:
            return "", gr.skip()
        lines = []
        for label, (name, atlas) in atlases.items():
            medians = np.median(atlas.nonlocality.numpy(), axis=(0, 2))
            per_block = " / ".join(f"{m:.2f}" for m in medians)
            lines.append(f"**{label}** `{name}`: {int(atlas.correct.sum())} of {len(atlas.labels)} right; median "
                         f"nonlocality per block (0 to {len(medians) - 1}) {per_block} patches.")
        last = len(next(iter(atlases.values()))[1].labels) - 1
        return (prefix + "\n\n".join(lines),
                gr.Number(label=f"Probe image # (0-{last})", maximum=last))

    def atlas_image(self, model: str | None, index) -> str:
        """Probe image `index` (0 to the probe set's size - 1) of the task of `model`'s pair, as the PNG file the
        models were shown (the analysis of it sees the same tensor)."""
        atlases, _ = self._atlases(model)
        if not atlases:
            raise gr.Error(f"{model} has no probe set: choose a shipped ConViT or DeiT.")
        name = next(iter(atlases.values()))[0]
        _, probe = self.service.atlas(name)
        i = parse_index(index, "probe image", list(range(len(probe))))
        pixels = probe.images[i].numpy()  # (C, h, w) uint8
        path = scratch.folder("atlas") / f"probe_{i}.png"
        Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)).save(path)
        return str(path)

    def describe(self, model: str | None, index) -> str:
        """Which probe image was loaded, its class and each model's prediction."""
        atlases, _ = self._atlases(model)
        first = next(iter(atlases.values()))[1]
        i = parse_index(index, "probe image", list(range(len(first.labels))))
        said = "; ".join(f"{label} predicts {a.classes[int(a.predictions[i])]}" for label, (_, a) in atlases.items())
        return f"Loaded probe image #{i}: true class {first.classes[int(first.labels[i])]}; {said}."


def build_atlas_tab(shared: Shared, service: Service) -> None:
    """The tab's layout and its endpoints /atlas (the figure and the numbers) and /atlas_image (a probe image, which
    the page loads as its image)."""
    view = AtlasView(service)
    gr.Markdown("**Nonlocality of every block and head on each probe image, ConViT next to DeiT.** Each point is "
                "one image (a cross where the model gets it wrong): hover to read it, click to load it above (the "
                "page then analyses it).")
    atlas_plot = figure_output(show_label=False, elem_id="atlas-plot")
    note = gr.Markdown(elem_id="atlas-note")
    with gr.Row():
        index = gr.Number(label="Probe image #", precision=0, minimum=0, elem_id="atlas-index", scale=1)
        load = gr.Button("Load", size="sm", scale=0, elem_id="atlas-load")
        picked = gr.Markdown(elem_id="atlas-picked")
    # what the click listener types into (in the page, hidden): the number of the clicked image
    pick = gr.Textbox(visible="hidden", elem_id="atlas-pick")
    numbers = numbers_panel("Numbers (JSON): per model, block and head, the median, quartiles and every image")
    learn("the locality atlas", LEARN)
    # drawn when shown (tracing both probe sets costs seconds, and the figure weighs a megabyte)
    gr.on([shared.tab.change, shared.model.change], view.show, [shared.model, shared.tab],
          [atlas_plot, numbers, note, index], **EACH_CHANGE, **PRIVATE)
    gr.Button(visible=False).click(view.atlas, shared.model, [atlas_plot, numbers], api_name="atlas")
    shared.warm_ups.append(lambda model, image: ANSWERS.answering(view.atlas)(model))
    shared.demo.load(None, js=CLICK_JS, **PRIVATE)
    picked_image = pick.change(view.atlas_image, [shared.model, pick], shared.image, api_name="atlas_image")
    shared.after_set(picked_image)
    picked_image.success(view.describe, [shared.model, pick], picked, **PRIVATE).success(
        lambda i: int(i), pick, index, **PRIVATE)
    loaded_image = gr.on([load.click, index.submit], view.atlas_image, [shared.model, index], shared.image, **PRIVATE)
    shared.after_set(loaded_image)
    loaded_image.success(view.describe, [shared.model, index], picked, **PRIVATE)
