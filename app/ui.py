"""The page: shared inputs (image, model, query) on top, one tab per view below, and the event wiring.

Every view is also a named API endpoint (see README, "API"): /analyze, /attention, /gpsa, /dial, /equation,
/gates_history, /nonlocality_history, /bypass, /compare, /atlas, /atlas_image, /replay, /findings, /models,
/examples and /export_<view>. The page's URL carries the view (app.links); the guided path (app.guide) opens its
steps' views.
"""
from __future__ import annotations

import functools
import html
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

import gradio as gr
import numpy as np
from PIL import Image

from app import plots, scratch
from app.answers import by_image_and_inputs, shares
from app.guard import shorten
from app.guide import STEPS, guide_text, lecturer_sheet
from app.links import ViewLink, example_name, example_path
from app.queue_policy import slow
from app.service import Result, Service, parse_query
from app.tabs.atlas import build_atlas_tab
from app.tabs.attention import build_attention_tab
from app.tabs.common import EACH_CHANGE, PRIVATE, Repeats, Shared, quiet
from app.tabs.compare import build_compare_tab
from app.tabs.convpass import build_convpass_tab
from app.tabs.dial import build_dial_tab
from app.tabs.equation import build_equation_tab
from app.tabs.findings import build_findings_tab
from app.tabs.gates import build_gates_tab
from app.tabs.gpsa import build_gpsa_tab
from app.tabs.nonlocality import build_nonlocality_tab
from app.tabs.replay import ReplayView, build_replay_tab
from app.uploads import EXAMPLES, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MAX_WEIGHTS_BYTES, guard_files, read_upload
from app.warm_up import warm_guided_path
from petl_core import catalog
from petl_core.errors import CheckpointError, HubUnavailableError, ImageError
from petl_core.query import CLS, Query

if TYPE_CHECKING:
    from petl_core.examples import Example

__all__ = ["FILES_TTL_S", "Linked", "Page", "build_demo", "image_input"]

FILES_TTL_S = 1800
"""Uploads, exports and sketches are deleted this many seconds after they were made (default)."""

INTRO = """
# Inductive Bias Explorer
See what a convolutional inductive bias does inside a vision transformer. Upload an image (or pick an example, or
draw), choose a model, then click a patch of *what the model saw* to ask where that patch looks. **ConViT** has a
*soft* bias (gated positional attention each head may keep or drop), **Convpass** a *hard* one (3×3 convolutions
added beside a frozen ViT), **DeiT** none. The shipped models are small and were trained here: on *scenes* (a
Fashion-MNIST item or a digit at any place and size on a texture, among pieces of others) and on plain
Fashion-MNIST (clothes, 28×28 grayscale) and handwritten digits; the examples under the image are test images of
the chosen model's own task, and the line under the model says what it sees. Hub models need internet.
"""
SLIDER_ENTER_JS = """() => document.addEventListener('keydown', (event) => {
    const box = event.target;
    if (event.key === 'Enter' && box.matches && box.matches('input[data-testid="number-input"]')) box.blur();
})"""

SKETCH_BRUSH_JS = """() => new MutationObserver(() => {
    // Gradio 6.31's Sketchpad has no default tool and says "select the draw tool to start": pick its brush once,
    // when the pad first shows, so a drag draws at once
    const brush = document.querySelector('#sketch button[aria-label="Brush"]');
    if (brush && !brush.dataset.picked && brush.offsetParent !== null) {
        brush.dataset.picked = '1';
        brush.click();
    }
}).observe(document.body, {childList: true, subtree: true, attributes: true, attributeFilter: ['style', 'class']})"""


def _photos() -> list[Path]:
    """The shipped example photos (not the test scenes beside them): the examples of models without a task of ours."""
    return sorted(p for p in EXAMPLES.glob("*") if p.suffix in (".png", ".jpg") and "scene" not in p.name)


def _caption(example: Example) -> str:
    """The true label, ✓ when the model gets it right, else ✗ and the model's answer (short: a caption longer than
    its thumbnail is cut)."""
    return f"{example.label} ✓" if example.correct else f"{example.label} ✗ {example.prediction}"


def image_input(**kwargs) -> gr.Image:
    """A gr.Image (filepath) that accepts only files uploaded to this app, up to MAX_IMAGE_BYTES, and says what is
    wrong with a bad one (see app.uploads)."""
    # image_mode=None: the file as uploaded; petl_core.images.load_image does every conversion (Gradio's own would
    # clip 16-bit images and put transparent pixels on black)
    return guard_files(gr.Image(type="filepath", image_mode=None, **kwargs), MAX_IMAGE_BYTES, "image",
                       MAX_IMAGE_PIXELS)


def _views(result: Result, query: str, caution: str | None) -> tuple:
    """What /analyze returns for one analysis: the input as the model saw it (query patch framed), the top-5, the
    numbers (JSON, with `caution`: how far to trust the answer, or None), the model card, the gates heatmap, this
    image's nonlocality against the model at init, and the caution as a line beside the top-5."""
    from petl_core.metrics import uniform_nonlocality

    model, trace = result.model_name, result.trace
    q = parse_query(query, trace.grid)
    summary = {"model": model, "inverted": result.inverted, "caution": caution, **result.analysis.summary()}
    top5 = {d["label"]: d["probability"] for d in summary["top5"]}
    gates = (plots.gates_heatmap(trace.gate_matrix.numpy(), trace.gated_blocks, f"σ(λ) of {model}")
             if trace.gated_blocks else plots.message_figure(f"{model} has no GPSA blocks, so no gates"))
    nonlocality = plots.image_nonlocality_figure([v[0].numpy() for v in result.analysis.nonlocality],
                                                 [v[0].numpy() for v in result.analysis.init_nonlocality],
                                                 f"nonlocality of {model} on this image",
                                                 uniform_nonlocality(trace.grid))
    return (plots.picker_image(result.input_image, trace.grid, q), top5, summary, result.card, gates, nonlocality,
            f"⚠ {caution}" if caution else "")


@dataclass
class Linked:
    """The controls a shared link or a guide step sets (see app.links.ViewLink)."""

    tabs: gr.Tabs
    blocks: dict[str, gr.Component]
    """Tab id → the control of the block it shows; "attention" also stands for a link without a tab."""
    heads: dict[str, gr.Component]
    """Tab id → the control of the head it shows."""
    step: gr.Dropdown
    """The training step of the replay."""
    replay: ReplayView
    guide: gr.Radio
    guide_text: gr.Markdown
    pending: gr.Textbox
    """(Hidden) the checked query string of the link the page was opened with. The view is opened from its change,
    not at page load (Gradio 6.31): an event that outputs to the image input and runs at page load keeps the image's
    later errors from showing as toasts."""


class Page:
    """The handlers of the page's own inputs (analyse, fit the controls, pick a patch, open and make links, walk the
    guide), on the analyses of `service`."""

    def __init__(self, service: Service, default_model: str = catalog.DEFAULT_MODEL) -> None:
        self.service = service
        self.default_model = default_model
        self.shared: Shared | None = None
        self.linked: Linked | None = None
        self.tab_ids: list[str] = []
        self.targets: list[gr.Component] = []
        """What a link or a guide step may set, in the order of the updates `_updates` returns."""
        self._analysed, self._fitted = Repeats(), Repeats()
        """The page's last automatic analysis and fit of the controls, per session: a repeat of either is skipped."""

    @shares(by_image_and_inputs)
    def analyze(self, image: str | None, model: str, weights: str | None, query: str = "center",
                invert: bool = True, progress: gr.Progress = gr.Progress()) -> tuple:
        """Run `model` on `image` once (with `invert`, a light background is inverted first for the light-on-dark
        models). Returns the input as the model saw it (query patch framed), the top-5, a JSON with whether the image
        was inverted, the top-5, the gates σ(λ) and the nonlocality per layer and head (trained and at init), the
        model card, the gates heatmap and the nonlocality of this image against the model at init."""
        result = self.service.result_for(image, model, weights, progress, invert)
        return _views(result, query, self.service.caution(result, weights))

    def _analyze_if_image(self, image: str | None, model: str, weights: str | None, query: str, invert: bool,
                          request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple:
        """`analyze` after the image, the model or the inversion changed, and the query: kept, or back to the centre
        patch when it does not fit the new model's patch grid (a 12×12 patch after switching to an 8×8 model).
        Inputs the session's previous call had (the model list's second `input`: see Repeats) change nothing."""
        if not image:
            self._analysed.forget(request)
            return (gr.skip(),) * 8
        if self._analysed.repeated(request, image, model, weights, bool(invert)):
            return (gr.skip(),) * 8
        try:
            result = self.service.result_for(image, model, weights, progress, invert)
        except HubUnavailableError:  # (said by `examples`) the results of the last model stay, as the views do
            self._analysed.forget(request)
            return (gr.skip(),) * 8
        except BaseException:
            self._analysed.forget(request)
            raise
        caution = self.service.caution(result, weights)
        try:
            parse_query(query, result.trace.grid)
        except gr.Error:
            return (*_views(result, "center", caution), "center")
        # the query is left alone when it fits: a value sent back while a click or a link sets another one makes
        # Gradio's Textbox flip between the two for ever (each flip a change event that redraws every view)
        return (*_views(result, query, caution), gr.skip())

    def frame(self, image: str | None, model: str, weights: str | None, query: str, invert: bool,
              progress: gr.Progress = gr.Progress()) -> np.ndarray:
        """What the model saw with the query patch framed, after the query changed (whichever tab is shown)."""
        if not image:
            return gr.skip()
        trace = (result := self.service.result_for(image, model, weights, progress, invert)).trace
        return plots.picker_image(result.input_image, trace.grid, parse_query(query, trace.grid))

    def check_query(self, image: str | None, model: str, weights: str | None, query: str, invert: bool) -> None:
        """Refuse, once for the page, a query typed into the box that the analysed model's patch grid has no patch
        for (the views leave themselves as they are: see app.tabs.common.quiet)."""
        if not image:
            return
        try:
            grid = self.service.result_for(image, model, weights, invert=invert).trace.grid
        except (gr.Error, ImageError, CheckpointError, HubUnavailableError):  # (the analysis said why)
            return
        parse_query(query, grid)

    def _controls(self, image: str | None, model: str, weights: str | None, layer: float, head: float,
                  compare_layer: float, gpsa_block: int | str | None, bypass_block: int | str | None,
                  analyses: int, invert: bool = True, request: gr.Request | None = None) -> tuple:
        """Fit the sliders (range and value) and dropdowns to the analysed model (keeping the values that fit it),
        then count the analysis, which tells every view to redraw; a repeat of the session's previous fit (after a
        repeated analysis: see Repeats) changes nothing."""
        if not image or self._fitted.repeated(request, image, model, weights, bool(invert)):
            return (gr.skip(),) * 6
        try:
            trace = self.service.result_for(image, model, weights, invert=invert).trace
        except BaseException:
            self._fitted.forget(request)
            raise
        last, heads = len(trace.attention) - 1, max(a.shape[1] for a in trace.attention) - 1
        gated = trace.gated_blocks
        bypassed = [i for i, b in enumerate(trace.bypass) if b]
        return (gr.Slider(maximum=last, value=min(layer, last)), gr.Slider(maximum=heads, value=min(head, heads)),
                gr.Slider(maximum=last, value=min(compare_layer, last)),
                gr.Dropdown(choices=gated, value=_kept(gpsa_block, gated)),
                gr.Dropdown(choices=bypassed, value=_kept(bypass_block, bypassed)), analyses + 1)

    def _pick(self, image: str | None, model: str, weights: str | None, picture: np.ndarray | None, invert: bool,
              evt: gr.SelectData) -> str:
        """The patch under a click on the picture of the model input, as 'row,col'."""
        if not image or picture is None:
            raise gr.Error("Analyse an image first, then click a patch of what the model saw.")
        grid = self.service.result_for(image, model, weights, invert=invert).trace.grid
        return Query.at(*plots.patch_at(evt.index[0], evt.index[1], np.asarray(picture).shape, grid)).text

    def _updates(self, updates: dict) -> tuple:
        """`updates` (component → value) for every component of `targets` (gr.skip() for the others)."""
        return tuple(updates.get(target, gr.skip()) for target in self.targets)

    def open_view(self, link: ViewLink, model: str, sets: int) -> dict:
        """The updates that show `link` (a shared link or a guide step) on a page showing `model`: only the parts
        the link sets, and the count of the server's sets of the image or model (`sets`, Shared.sets) when it sets
        either."""
        shared, linked = self.shared, self.linked
        updates: dict = {}
        if link.model is not None:
            updates[shared.model] = model = link.model
        if link.example is not None:
            updates[shared.image] = example_path(link.example)
        if updates:
            updates[shared.sets] = (sets if isinstance(sets, int) else 0) + 1
        if link.query is not None:
            updates[shared.query] = link.query
        tab = link.tab or "attention"
        if link.tab is not None:
            updates[linked.tabs] = gr.Tabs(selected=link.tab)
            updates[shared.tab] = link.tab
        if link.block is not None and tab in linked.blocks:
            updates[linked.blocks[tab]] = link.block
        if link.head is not None and tab in linked.heads:
            updates[linked.heads[tab]] = link.head
        if link.step is not None:
            updates[linked.step] = linked.replay.nearest(model, link.step)
        return updates

    def _parse_link(self, query_string: str | None) -> tuple[ViewLink, list[str]]:
        params = dict(parse_qsl(str(query_string or "")[:4000]))
        link, dropped = ViewLink.parse(params, [n for _, n in self.service.model_choices()], self.tab_ids)
        if link.guide is not None and not 1 <= link.guide <= len(STEPS):
            dropped.append(f"guide step {link.guide} (the guide has steps 1-{len(STEPS)})")
            link = replace(link, guide=None)
        return link, dropped

    def read_link(self, query_string: str | None) -> tuple:
        """The page's URL parameters (its `query_string`: a teacher's link), each part checked, with a warning that
        names what was dropped: a guide step for the guide, else the checked link to open (see Linked.pending)."""
        link, dropped = self._parse_link(query_string)
        for sentence in dropped:
            # the page renders warnings as HTML, and a sentence may quote the link's own text
            gr.Warning(html.escape(shorten(sentence[0].upper() + sentence[1:] + "; it was left out."), quote=False))
        if link.guide is not None:
            return link.guide, gr.skip()
        return gr.skip(), link.query_string().lstrip("?") or gr.skip()

    def open_link(self, query_string: str | None, model: str, sets: int) -> tuple:
        """The view of a checked link (see `read_link`), on a page showing `model`. Any caller may send anything:
        it is checked again, and what does not pass is left out."""
        return self._updates(self.open_view(self._parse_link(query_string)[0], model, sets))

    def open_step(self, step: int | None, model: str, sets: int) -> tuple:
        """Guide step `step` (1-based): its view and what to notice there."""
        if step is None:
            return self._updates({})
        if not isinstance(step, int) or not 1 <= step <= len(STEPS):
            raise gr.Error(f"The guide has steps 1-{len(STEPS)}.")
        return self._updates({**self.open_view(STEPS[step - 1].view, model, sets),
                              self.linked.guide_text: guide_text(self.service, step)})

    def make_link(self, image: dict | None, model: str, tab: str, query: str, step: int | str | None,
                  guide: int | None, *controls) -> tuple[str, gr.Textbox]:
        """The URL query string of the page's view (block and head of the tab shown), and the link box saying when
        the image cannot travel in it (only shipped examples can). Its inputs arrive unprocessed (`image` is the
        file's payload): a bad upload is the analysis's to report, not a second toast from here."""
        blocks = dict(zip(self.linked.blocks, controls[:len(self.linked.blocks)], strict=True))
        heads = dict(zip(self.linked.heads, controls[len(self.linked.blocks):], strict=True))
        image = image.get("path") if isinstance(image, dict) else None
        example = example_name(read_upload(image, MAX_IMAGE_BYTES, "image")) if image else None
        note = "" if example or not image else "Your own image cannot travel in a link (only the examples can)."
        link = ViewLink(model=model, example=example, tab=tab, block=_whole(blocks.get(tab)),
                        head=_whole(heads.get(tab)), query=query or None,
                        step=_whole(step) if tab == "replay" else None, guide=guide)
        return link.query_string(), gr.Textbox(info=note)

    def models(self) -> list[dict]:
        """Every model the app offers, with its source, family, whether it can be used now (and why not) and whether
        the page opens with it."""
        return [{"name": e.name, "title": e.title, "source": e.source, "family": e.family, "available": e.available,
                 "reason": e.reason, "default": e.name == self.default_model} for e in self.service.model_entries()]

    def _example_files(self, model: str) -> tuple[list[tuple[str, str]], str]:
        """(file, caption) of the examples that fit `model`, and what they are: the test images of its own task (see
        Service.examples), else the photos."""
        examples = self.service.examples(model)
        if examples is None:
            return [(str(p), p.stem) for p in _photos()], "Example photos (credits: assets/examples/CREDITS.md)"
        wrong = sum(not e.correct for e in examples)
        task = examples[0].path.parent.name
        return ([(str(e.path), _caption(e)) for e in examples],
                f"{task} test images: {len(examples) - wrong} right ✓, {wrong} wrong ✗ (and the model's answer)")

    def warm_examples(self, model: str, image: str | None = None) -> None:
        """Work out the examples of `model` before anyone asks (a Shared.warm_ups entry): a guide step that changes
        the model then shows its examples and line at once (the Convpass step's took ~4-8 s, while the page already
        showed the digits model's answer beside the clothes model's examples)."""
        self.service.examples(model)

    @slow
    def sheet(self) -> gr.File:
        """The lecturer's sheet of the guided path (app.guide.lecturer_sheet) as a Markdown file."""
        path = scratch.folder("sheet") / "lecturer_sheet.md"
        path.write_text(lecturer_sheet(self.service), encoding="utf-8")
        return gr.File(value=str(path), visible=True)

    def examples(self, model: str, weights: str | None = None) -> tuple[gr.Gallery, str]:
        """The examples that fit `model` (captioned) and the line on what it sees (with `weights`: with that file's
        weights); a warning when it cannot be used now (the page's one word on it: the analysis and the views keep
        the last model's results)."""
        files, label = self._example_files(model)
        entry = self.service.model_entry(model)
        if not entry.available and not weights:
            gr.Warning(entry.reason)
        return (gr.Gallery(value=files, label=label, selected_index=None),
                f"*{self.service.input_line(model, weights)}*")

    def use_example(self, model: str, evt: gr.SelectData) -> str:
        """The file of the example clicked in the gallery of `model`."""
        files, _ = self._example_files(model)
        index = evt.index if isinstance(evt.index, int) else -1
        if not 0 <= index < len(files):
            raise gr.Error(f"{model} has examples 0-{len(files) - 1}; pick one of them.")
        return files[index][0]


def _address(request: gr.Request) -> str:
    """The page's URL parameters, as a query string."""
    return urlencode(list(request.query_params.multi_items()))


def _kept(value: int | str | None, valid: list[int]) -> int | None:
    """`value` when it is one of `valid`, else the first of `valid` (None when there is none)."""
    return next((v for v in valid if str(v) == str(value)), valid[0] if valid else None)


def _whole(value: float | int | str | None) -> int | None:
    """A control's value as a non-negative int, or None."""
    try:
        number = float(str(value))
    except ValueError:
        return None
    return int(number) if number.is_integer() and number >= 0 else None


def _use_sketch(sketch: dict | None) -> str:
    """The drawing as a file the analysis reads: black ink on white, as drawn. The analysis inverts it for the
    light-on-dark models as it does any picture on white (`invert`, petl_core.inputs): one place decides, so a
    sketch is never inverted twice and a photo model sees it as drawn."""
    if not sketch or sketch.get("composite") is None:
        raise gr.Error("Draw something first.")
    composite = Image.open(sketch["composite"]) if isinstance(sketch["composite"], str) else sketch["composite"]
    drawing = composite.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", drawing.size, "white"), drawing).convert("L")
    path = scratch.folder("sketch") / "sketch.png"
    flat.save(path, format="PNG")
    return str(path)


THEME = gr.themes.Default(
    font=(gr.themes.LocalFont("IBM Plex Sans", weights=(400, 700)), "ui-sans-serif", "system-ui", "sans-serif"),
    font_mono=(gr.themes.LocalFont("IBM Plex Mono", weights=(400, 700)), "ui-monospace", "Consolas", "monospace"))
"""Gradio's default look, its fonts served from the app as before, in their regular and bold faces only: the
semibold faces Gradio serves (IBMPlexSans-SemiBold.woff2, IBMPlexMono-SemiBold.woff2) hold 75-99 glyphs and no
capital letter, so a heading's capitals came from another font ("Inductive Bias", "GPSA"). A semibold heading now
takes the bold face."""


CSS = """
#examples .caption-label { max-width: calc(100% - 8px); white-space: normal; }
"""
"""The page's own style: an example's caption may take a second line rather than be cut ("Sandal ✗ Sn…")."""


def build_demo(service: Service, default_model: str = catalog.DEFAULT_MODEL,
               files_ttl_s: int = FILES_TTL_S, in_page: bool = True) -> gr.Blocks:
    """The whole app on `service` (not launched); uploads and the files it returns are deleted after `files_ttl_s`
    seconds. `in_page`: the page draws what it can itself (Shared.in_page)."""
    page = Page(service, default_model)
    max_blocks, max_heads = service.largest_dimensions()
    with gr.Blocks(title="Inductive Bias Explorer",
                   delete_cache=(max(1, files_ttl_s // 4), files_ttl_s)) as demo:
        gr.Markdown(INTRO)
        with gr.Accordion(f"Start here: a guided path in {len(STEPS)} steps", open=True, elem_id="guide"):
            with gr.Row():
                back = gr.Button("◀ Back", size="sm", scale=0, elem_id="guide-back")
                guide = gr.Radio([(f"{i}. {step.title}", i) for i, step in enumerate(STEPS, 1)], value=None,
                                 show_label=False, elem_id="guide-step", scale=8)
                forward = gr.Button("Next ▶", size="sm", scale=0, elem_id="guide-next")
            guide_note = gr.Markdown("Each step opens a model, an image and a view, and says what to notice there "
                                     "and what to conclude, with the loaded models' numbers, and asks one question "
                                     "for a class. Pick a step or press **Next**.", elem_id="guide-text")
            with gr.Row():
                make_sheet = gr.Button("Lecturer's sheet: the whole path on one page (Markdown)", size="sm",
                                       scale=0, min_width=380, elem_id="guide-sheet")
                sheet = gr.File(label="Lecturer's sheet", visible=False, elem_id="guide-sheet-file")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                image = image_input(label=f"Your image (up to {MAX_IMAGE_BYTES // 2**20} MB, "
                                          f"{MAX_IMAGE_PIXELS // 10**6} megapixels)",
                                    sources=["upload", "clipboard"], height=260, elem_id="image-input")
                # the examples, and the line on what the model sees, come with the page's first event (`opened`):
                # they need the model, and the page is served before torch loads; a fixed height, so that nothing
                # below moves when they come (a sketch being drawn)
                # two rows of three: all six in sight with their whole captions (six in a row ran off to the side)
                gallery = gr.Gallery(label="Examples (loading the model…)", columns=3, height=300,
                                     allow_preview=False, object_fit="contain", elem_id="examples")
                with gr.Accordion("…or draw a sketch", open=False):
                    gr.Markdown("Black ink on white: the grayscale models see it inverted, as any picture on white "
                                "(the inversion box below).")
                    sketch = guard_files(gr.Sketchpad(type="filepath", label="Sketch", canvas_size=(280, 280),
                                                      elem_id="sketch"), MAX_IMAGE_BYTES, "sketch", MAX_IMAGE_PIXELS)
                    use_sketch = gr.Button("Use this sketch", size="sm")
                model = gr.Dropdown(service.model_choices(), value=default_model, label="Model", elem_id="model")
                seen = gr.Markdown("*What the model sees: loading it…*", elem_id="model-input")
                invert = gr.Checkbox(True, label="Invert light backgrounds", elem_id="invert",
                                     info="for the grayscale models, which saw light objects on dark backgrounds")
                with gr.Accordion("Your own weights (optional)", open=False):
                    weights = guard_files(
                        gr.File(label=f"Weights for the chosen model's architecture (up to "
                                      f"{MAX_WEIGHTS_BYTES // 2**20} MB)", type="filepath",
                                file_types=[".safetensors", ".pth", ".pt", ".bin"], elem_id="weights"),
                        MAX_WEIGHTS_BYTES, "weights file")
                    gr.Markdown("For a hub model: its timm weights file (works offline). For a shipped model: a "
                                "`python -m petl_core train` checkpoint of the same recipe (`model.safetensors`). "
                                "Only tensors are read (safetensors, or `torch.save` archives with "
                                "`weights_only=True`).")
                run = gr.Button("Analyze", variant="primary", elem_id="analyze")
            with gr.Column(scale=1):
                gr.Markdown("**What the model saw**: click a patch to make it the query")
                picker = guard_files(gr.Image(show_label=False, interactive=False, height=330, elem_id="picker",
                                              buttons=["download"]), MAX_IMAGE_BYTES, "image", MAX_IMAGE_PIXELS)
                with gr.Row():
                    # the centre patch by default: ConViT's GPSA blocks have no class token to query
                    query = gr.Textbox("center", label="Query: cls, center or row,col", elem_id="query", scale=2)
                    use_cls = gr.Button("Class token", size="sm", scale=1)
                    log_scale = gr.Checkbox(True, label="Log colour scale", elem_id="log-scale", scale=1)
            with gr.Column(scale=1):
                top5 = gr.Label(num_top_classes=5, label="Top-5", elem_id="top5")
                # how far to trust the answer: an image unlike the model's test images, or one it is unsure of
                caution = gr.Markdown(elem_id="caution")
                with gr.Accordion("Numbers of this analysis (JSON)", open=False):
                    summary = gr.JSON(elem_id="summary")
                with gr.Accordion("Model card", open=False):
                    card = gr.JSON(elem_id="card")
                link = gr.Textbox(label="Link to this view (copy it to share; opening it restores the view)",
                                  interactive=False, buttons=["copy"], elem_id="view-link")
        shared = Shared(demo=demo, image=image, model=model, weights=weights, query=query, log_scale=log_scale,
                        invert=invert, picker=picker, tab=gr.Textbox("attention", visible="hidden"),
                        analyses=gr.State(0), sets=gr.State(0),
                        max_blocks=max_blocks, max_heads=max_heads, in_page=in_page)
        # the step's text again right above the views it opens, scrolled into sight with them (the guide's own text
        # is ~900 px above the views): filled and scrolled in the page, no server call
        near = gr.Markdown(elem_id="guide-near")
        guide_note.change(None, guide_note, near, js="(text) => text", **PRIVATE)
        near.change(None, None, None, js="() => { const at = document.getElementById('guide-near'); "
                                         "if (at) at.scrollIntoView({block: 'start'}); }", **PRIVATE)
        shared.warm_ups.append(page.warm_examples)
        with gr.Tabs(elem_id="views") as tabs:
            with gr.Tab("Attention", id="attention", elem_id="tab-attention"):
                attention_layer, attention_head = build_attention_tab(shared, service)
            with gr.Tab("Content vs position", id="gpsa", elem_id="tab-gpsa"):
                gpsa_block = build_gpsa_tab(shared, service)
            with gr.Tab("Dial", id="dial", elem_id="tab-dial"):
                build_dial_tab(shared, service)
            with gr.Tab("Equation", id="equation", elem_id="tab-equation"):
                equation_block, equation_head = build_equation_tab(shared, service)
            with gr.Tab("Gates", id="gates", elem_id="tab-gates"):
                gates_now = build_gates_tab(shared, service)
            with gr.Tab("Nonlocality", id="nonlocality", elem_id="tab-nonlocality"):
                nonlocality_image = build_nonlocality_tab(shared, service)
            with gr.Tab("Convpass", id="bypass", elem_id="tab-bypass"):
                bypass_block = build_convpass_tab(shared, service)
            with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
                compare_layer = build_compare_tab(shared, service)
            with gr.Tab("Atlas", id="atlas", elem_id="tab-atlas"):
                build_atlas_tab(shared, service)
            with gr.Tab("Training", id="replay", elem_id="tab-replay"):
                replay_step, replay = build_replay_tab(shared, service)
            with gr.Tab("Findings", id="findings", elem_id="tab-findings"):
                build_findings_tab(shared)
        analysis_inputs = [image, model, weights, query, invert]
        analysis_outputs = [picker, top5, summary, card, gates_now, nonlocality_image, caution]
        # the views listen to `analyses`, so the controls are fitted to the new model before any view redraws
        controls = [attention_layer, attention_head, compare_layer, gpsa_block, bypass_block, shared.analyses]
        control_inputs = [image, model, weights, attention_layer, attention_head, compare_layer, gpsa_block,
                          bypass_block, shared.analyses, invert]
        run.click(page.analyze, analysis_inputs, analysis_outputs, api_name="analyze").success(
            page._controls, control_inputs, controls, api_visibility="private")
        # the model's change is not among them: a link sets the model and the image at once (one analysis)
        gr.on([*shared.changes([image, weights, invert]), model.input], page._analyze_if_image, analysis_inputs,
              [*analysis_outputs, query], api_visibility="private", **EACH_CHANGE).success(
            quiet(page._controls, len(controls)), control_inputs, controls, api_visibility="private")
        make_sheet.click(page.sheet, None, sheet, api_name="lecturer_sheet")
        gr.on([model.change, *shared.changes([weights])], page.examples, [model, weights], [gallery, seen],
              api_name="examples", **EACH_CHANGE)
        opened = demo.load(page.examples, [model, weights], [gallery, seen], **PRIVATE)
        shared.after_set(gallery.select(page.use_example, model, image, api_visibility="private"))
        # "always_last": a click while the last one is answered is kept (Gradio's default drops it) and the last
        # click wins (clicks 250-400 ms apart ended on an earlier patch)
        picker.select(page._pick, [image, model, weights, picker, invert], query, api_visibility="private",
                      trigger_mode="always_last")
        use_cls.click(None, None, query, js=f"() => {CLS.text!r}", api_visibility="private")  # (no server call)
        query.change(quiet(page.frame, 1), analysis_inputs, picker, **EACH_CHANGE, **PRIVATE)
        gr.on([query.submit, query.blur], page.check_query, analysis_inputs, None, api_visibility="private")
        shared.after_set(use_sketch.click(_use_sketch, sketch, image, api_visibility="private"))
        demo.load(None, js=SKETCH_BRUSH_JS, api_visibility="private")
        gr.Button(visible=False).click(page.models, None, gr.JSON(visible=False), api_name="models")
        _optional_inputs(demo, [invert])
        _wire_links(page, shared, Linked(
            tabs=tabs, step=replay_step, replay=replay, guide=guide, guide_text=guide_note,
            pending=gr.Textbox(visible="hidden"),
            blocks={"attention": attention_layer, "gpsa": gpsa_block, "bypass": bypass_block,
                    "compare": compare_layer, "equation": equation_block},
            heads={"attention": attention_head, "equation": equation_head}), link, back, forward, opened)
        demo.warm_up = functools.partial(warm_guided_path, shared)  # (app.py calls it once the models load)
    return demo



def _optional_inputs(demo: gr.Blocks, optional: list[gr.Component]) -> None:
    """Let a caller of the REST API leave out the trailing `optional` inputs of an event, which then take their
    initial values (gradio_client fills them in the same way), so calls written before those inputs existed (an
    /analyze without `invert`) keep working; any other missing input is still refused."""
    validate = demo.validate_inputs
    initial = {component._id: component.value for component in optional}

    def validate_inputs(block_fn, inputs: list) -> None:
        missing = [component._id for component in block_fn.inputs[len(inputs):]]
        if missing and all(i in initial for i in missing):
            inputs.extend(initial[i] for i in missing)
        validate(block_fn, inputs)

    demo.validate_inputs = validate_inputs


def _wire_links(page: Page, shared: Shared, linked: Linked, link: gr.Textbox, back: gr.Button,
                forward: gr.Button, opened: gr.events.Dependency) -> None:
    """Shared links and the guide: the page's URL opens a view (after `opened`, the page's first event, so that a
    link's model is set after the default model's examples are shown); every change of the view rewrites the URL (and
    the link box) without reloading; the guide's steps open theirs."""
    page.shared, page.linked = shared, linked
    page.tab_ids = [tab.id for tab in linked.tabs.children]
    # Enter in a slider's number box commits the number: Gradio sends `release` (which the views redraw on) only on
    # blur; a value set by the server sends no release, so fitting the sliders after an analysis draws once
    shared.demo.load(None, js=SLIDER_ENTER_JS, **PRIVATE)
    for tab in linked.tabs.children:
        # in the page itself (no server call); a hidden Textbox, as a State's change does not reliably follow
        tab.select(None, None, shared.tab, js=f"() => {json.dumps(tab.id)}", **PRIVATE)
    page.targets = [shared.model, shared.image, shared.sets, shared.query, linked.tabs, shared.tab, linked.step,
                    linked.guide, linked.guide_text, *linked.blocks.values(), *linked.heads.values()]
    targets = page.targets
    address = gr.Textbox(visible="hidden")
    opened.then(_address, None, address, **PRIVATE)
    address.change(page.read_link, address, [linked.guide, linked.pending], **PRIVATE)
    linked.pending.change(page.open_link, [linked.pending, shared.model, shared.sets], targets, **PRIVATE)
    linked.guide.change(page.open_step, [linked.guide, shared.model, shared.sets], targets, **EACH_CHANGE, **PRIVATE)
    last = len(STEPS)
    # (no queue, here and for the link: cheap answers must not wait behind the page's analyses)
    forward.click(lambda step: 1 if step is None else min(step + 1, last), linked.guide, linked.guide, queue=False,
                  **PRIVATE)
    back.click(lambda step: 1 if step is None else max(step - 1, 1), linked.guide, linked.guide, queue=False,
               **PRIVATE)
    query_string = gr.Textbox(visible="hidden")  # (a State's value never reaches the page's JavaScript)
    controls = [*linked.blocks.values(), *linked.heads.values()]
    triggers = shared.changes([shared.model, shared.image, shared.query, shared.tab, linked.step, linked.guide,
                               *controls])
    gr.on(triggers, page.make_link, [shared.image, shared.model, shared.tab, shared.query, linked.step, linked.guide,
                                     *controls], [query_string, link], **EACH_CHANGE, queue=False,
          preprocess=False, **PRIVATE).then(
        None, query_string, link, js="(query) => { const path = location.pathname + query; "
                                     "history.replaceState(null, '', path); return location.origin + path; }")
