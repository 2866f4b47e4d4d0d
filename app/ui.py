"""The page: shared inputs (image, model, query) on top, one tab per view below, and the event wiring.

Every view is also a named API endpoint (see README, "API"): /analyze, /attention, /gpsa, /gates_history,
/nonlocality_history, /bypass, /compare, /findings, /replay, /models and /export_<view>.
"""
from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image, ImageOps

from app import plots, scratch
from app.service import Result, Service, parse_query
from app.tabs.attention import build_attention_tab
from app.tabs.common import Shared
from app.tabs.compare import build_compare_tab
from app.tabs.convpass import build_convpass_tab
from app.tabs.dial import build_dial_tab
from app.tabs.findings import build_findings_tab
from app.tabs.gates import build_gates_tab
from app.tabs.gpsa import build_gpsa_tab
from app.tabs.nonlocality import build_nonlocality_tab
from app.tabs.replay import build_replay_tab
from app.uploads import EXAMPLES, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MAX_WEIGHTS_BYTES, guard_files
from petl_core import zoo
from petl_core.query import CLS, Query

__all__ = ["FILES_TTL_S", "Page", "build_demo", "image_input"]

FILES_TTL_S = 1800
"""Uploads, exports and sketches are deleted this many seconds after they were made (default)."""

INTRO = """
# Inductive Bias Explorer
See what a convolutional inductive bias does inside a vision transformer. Upload an image (or pick an example, or
draw), choose a model, then click a patch of *what the model saw* to ask where that patch looks. **ConViT** has a
*soft* bias (gated positional attention each head may keep or drop), **Convpass** a *hard* one (3×3 convolutions
added beside a frozen ViT), **DeiT** none. The shipped models are small and were trained here: on *scenes* (a
Fashion-MNIST item or a digit at any place and size on a texture, among pieces of others; the examples starting
with "scene" are test images) and on plain Fashion-MNIST (clothes, 28×28 grayscale) and handwritten digits. Each
model's card says what it recognises. Hub models need internet.
"""


def _examples() -> list[str]:
    """The example images, test scenes (which the shipped models were made for) first."""
    files = [p for p in EXAMPLES.glob("*") if p.suffix in (".png", ".jpg")]
    return [str(p) for p in sorted(files, key=lambda p: ("scene" not in p.name, p.name))]


def image_input(**kwargs) -> gr.Image:
    """A gr.Image (filepath) that accepts only files uploaded to this app, up to MAX_IMAGE_BYTES, and says what is
    wrong with a bad one (see app.uploads)."""
    # image_mode=None: the file as uploaded; petl_core.images.load_image does every conversion (Gradio's own would
    # clip 16-bit images and put transparent pixels on black)
    return guard_files(gr.Image(type="filepath", image_mode=None, **kwargs), MAX_IMAGE_BYTES, "image",
                       MAX_IMAGE_PIXELS)


def _views(result: Result, query: str) -> tuple:
    """What /analyze returns for one analysis: the input as the model saw it (query patch framed), the top-5, the
    numbers (JSON), the model card, the gates heatmap and this image's nonlocality against the model at init."""
    model, trace = result.model_name, result.trace
    q = parse_query(query, trace.grid)
    summary = {"model": model, **result.analysis.summary()}
    top5 = {d["label"]: d["probability"] for d in summary["top5"]}
    gates = (plots.gates_heatmap(trace.gate_matrix.numpy(), trace.gated_blocks, f"σ(λ) of {model}")
             if trace.gated_blocks else plots.message_figure(f"{model} has no GPSA blocks, so no gates"))
    nonlocality = plots.image_nonlocality_figure([v[0].numpy() for v in result.analysis.nonlocality],
                                                 [v[0].numpy() for v in result.analysis.init_nonlocality],
                                                 f"nonlocality of {model} on this image")
    return (plots.picker_image(result.input_image, trace.grid, q), top5, summary, result.card, gates, nonlocality)


class Page:
    """The handlers of the page's own inputs (analyse, fit the controls, pick a patch), on the analyses of
    `service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def analyze(self, image: str | None, model: str, weights: str | None, query: str = "center",
                progress: gr.Progress = gr.Progress()) -> tuple:
        """Run `model` on `image` once. Returns the input as the model saw it (query patch framed), the top-5, a
        JSON with the top-5, the gates σ(λ) and the nonlocality per layer and head (trained and at init), the model
        card, the gates heatmap and the nonlocality of this image against the model at init."""
        return _views(self.service.result_for(image, model, weights, progress), query)

    def _analyze_if_image(self, image: str | None, model: str, weights: str | None, query: str,
                          progress: gr.Progress = gr.Progress()) -> tuple:
        """`analyze` after the image or the model changed, and the query: kept, or back to the centre patch when it
        does not fit the new model's patch grid (a 12×12 patch after switching to an 8×8 model)."""
        if not image:
            return (gr.skip(),) * 7
        result = self.service.result_for(image, model, weights, progress)
        try:
            parse_query(query, result.trace.grid)
        except gr.Error:
            query = "center"
        return (*_views(result, query), query)

    def _controls(self, image: str | None, model: str, weights: str | None, layer: float, head: float,
                  compare_layer: float, analyses: int) -> tuple:
        """Fit the sliders (range and value) and dropdowns to the analysed model, then count the analysis, which
        tells every view to redraw."""
        if not image:
            return (gr.skip(),) * 6
        trace = self.service.result_for(image, model, weights).trace
        last, heads = len(trace.attention) - 1, max(a.shape[1] for a in trace.attention) - 1
        gated = trace.gated_blocks
        bypassed = [i for i, b in enumerate(trace.bypass) if b]
        return (gr.Slider(maximum=last, value=min(layer, last)), gr.Slider(maximum=heads, value=min(head, heads)),
                gr.Slider(maximum=last, value=min(compare_layer, last)),
                gr.Dropdown(choices=gated, value=gated[0] if gated else None),
                gr.Dropdown(choices=bypassed, value=bypassed[0] if bypassed else None), analyses + 1)

    def _pick(self, image: str | None, model: str, weights: str | None, picture: np.ndarray | None,
              evt: gr.SelectData) -> str:
        """The patch under a click on the picture of the model input, as 'row,col'."""
        if not image or picture is None:
            raise gr.Error("Analyse an image first, then click a patch of what the model saw.")
        grid = self.service.result_for(image, model, weights).trace.grid
        return Query.at(*plots.patch_at(evt.index[0], evt.index[1], np.asarray(picture).shape, grid)).text

    def models(self) -> list[dict]:
        """Every model the app offers, with its source, family and whether it can be used now (and why not)."""
        return [{"name": e.name, "title": e.title, "source": e.source, "family": e.family, "available": e.available,
                 "reason": e.reason} for e in self.service.model_entries()]


def _use_sketch(sketch: dict | None) -> str:
    """The drawing as a file the analysis reads: white ink on black, as in Fashion-MNIST and the digits."""
    if not sketch or sketch.get("composite") is None:
        raise gr.Error("Draw something first.")
    composite = Image.open(sketch["composite"]) if isinstance(sketch["composite"], str) else sketch["composite"]
    drawing = composite.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", drawing.size, "white"), drawing).convert("L")
    path = scratch.folder("sketch") / "sketch.png"
    ImageOps.invert(flat).save(path, format="PNG")
    return str(path)


def build_demo(service: Service, default_model: str = zoo.DEFAULT_MODEL,
               files_ttl_s: int = FILES_TTL_S) -> gr.Blocks:
    """The whole app on `service` (not launched); uploads and the files it returns are deleted after `files_ttl_s`
    seconds."""
    page = Page(service)
    max_blocks, max_heads = service.largest_dimensions()
    with gr.Blocks(title="Inductive Bias Explorer",
                   delete_cache=(max(1, files_ttl_s // 4), files_ttl_s)) as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                image = image_input(label=f"Your image (up to {MAX_IMAGE_BYTES // 2**20} MB, "
                                          f"{MAX_IMAGE_PIXELS // 10**6} megapixels)",
                                    sources=["upload", "clipboard"], height=260, elem_id="image-input")
                gr.Examples(_examples(), image,
                            label="Example photos (credits: assets/examples/CREDITS.md)", examples_per_page=8)
                with gr.Accordion("…or draw a sketch", open=False):
                    sketch = guard_files(gr.Sketchpad(type="filepath", label="Sketch (black on white; used inverted)",
                                                      canvas_size=(280, 280), elem_id="sketch"),
                                         MAX_IMAGE_BYTES, "sketch", MAX_IMAGE_PIXELS)
                    use_sketch = gr.Button("Use this sketch", size="sm")
                model = gr.Dropdown(service.model_choices(), value=default_model, label="Model", elem_id="model")
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
                with gr.Accordion("Numbers of this analysis (JSON)", open=False):
                    summary = gr.JSON(elem_id="summary")
                with gr.Accordion("Model card", open=False):
                    card = gr.JSON(elem_id="card")
        shared = Shared(demo=demo, image=image, model=model, weights=weights, query=query, log_scale=log_scale,
                        picker=picker, analyses=gr.State(0), max_blocks=max_blocks, max_heads=max_heads)
        with gr.Tabs(elem_id="views"):
            with gr.Tab("Attention", id="attention", elem_id="tab-attention"):
                attention_layer, attention_head = build_attention_tab(shared, service)
            with gr.Tab("GPSA: content vs position", id="gpsa", elem_id="tab-gpsa"):
                gpsa_block = build_gpsa_tab(shared, service)
            with gr.Tab("Dial: set the gates", id="dial", elem_id="tab-dial"):
                build_dial_tab(shared, service)
            with gr.Tab("Gates", id="gates", elem_id="tab-gates"):
                gates_now = build_gates_tab(shared, service)
            with gr.Tab("Nonlocality", id="nonlocality", elem_id="tab-nonlocality"):
                nonlocality_image = build_nonlocality_tab(shared, service)
            with gr.Tab("Convpass bypasses", id="bypass", elem_id="tab-bypass"):
                bypass_block = build_convpass_tab(shared, service)
            with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
                compare_layer = build_compare_tab(shared, service)
            with gr.Tab("Through training", id="replay", elem_id="tab-replay"):
                build_replay_tab(shared, service)
            with gr.Tab("Findings", id="findings", elem_id="tab-findings"):
                build_findings_tab(shared)
        analysis_inputs = [image, model, weights, query]
        analysis_outputs = [picker, top5, summary, card, gates_now, nonlocality_image]
        # the views listen to `analyses`, so the controls are fitted to the new model before any view redraws
        controls = [attention_layer, attention_head, compare_layer, gpsa_block, bypass_block, shared.analyses]
        control_inputs = [image, model, weights, attention_layer, attention_head, compare_layer, shared.analyses]
        run.click(page.analyze, analysis_inputs, analysis_outputs, api_name="analyze").success(
            page._controls, control_inputs, controls, api_visibility="private")
        gr.on([image.change, model.change, weights.change], page._analyze_if_image, analysis_inputs,
              [*analysis_outputs, query], api_visibility="private", trigger_mode="always_last").success(
            page._controls, control_inputs, controls, api_visibility="private")
        picker.select(page._pick, [image, model, weights, picker], query, api_visibility="private")
        use_cls.click(lambda: CLS.text, None, query, api_visibility="private")
        use_sketch.click(_use_sketch, sketch, image, api_visibility="private")
        gr.Button(visible=False).click(page.models, None, gr.JSON(visible=False), api_name="models")
    return demo
