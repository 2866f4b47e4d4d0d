"""Nonlocality: curves over training (ConViT next to DeiT) and this image's nonlocality against the model at init."""
from __future__ import annotations

import gradio as gr
import numpy as np

from app import plots, service
from app.tabs.common import export_row, plot, wire_export

LEARN = """
**Nonlocality** (ConViT paper, Eq. 8) is how far, on average, a head looks: the attention-weighted distance between
each query patch and the key patches, D = (1/P) Σ_i Σ_j A_ij ‖δ_ij‖, in patches, averaged over the queries. A head
attending only to its own patch scores 0; uniform attention over an 8×8 grid scores about 4.1.

**Over training** (left: ConViT, right: DeiT, both trained here on Fashion-MNIST, measured on 1,024 fixed test
images at each evaluation point): ConViT's GPSA layers start local (about 2 patches) because of their
convolutional initialisation; DeiT's layers start near the uniform value. The paper saw GPSA nonlocality rise as the
model learns to use content, and DeiT's early layers become more local. Here GPSA layers 2-4 rose a little
(1.98 → 2.09-2.19 in the shipped run) and DeiT's middle layers became more local (4.14 → 4.01-4.05).

**On your image**: each dot is one head, the line the layer mean, for the loaded checkpoint (red) and the same
architecture at initialisation (gray), on the same input.
"""


def render_training() -> object:
    """Nonlocality per layer over training, the shipped ConViT next to the shipped DeiT (interactive)."""
    histories = {label: h for label, name in (("ConViT", "convit_fmnist"), ("DeiT", "deit_fmnist"))
                 if (h := service.history(name)) is not None}
    if not histories:
        return plots.message_figure("no shipped training histories in assets/")
    return plots.nonlocality_over_training(histories)


def export(image: str | None, model: str, weights: str | None) -> list[str]:
    """Both nonlocality views as files (HTML) and the numbers per layer and head (JSON)."""
    result = service.result_for(image, model, weights)
    trained = [v[0].numpy() for v in result.analysis.nonlocality]
    initial = [v.numpy() for v in result.init_nonlocality]
    figures = {"over_training": render_training(),
               "image": plots.image_nonlocality_figure(trained, initial, f"nonlocality of {model} on this image")}
    numbers = {"model": model, "unit": "patches", "trained_per_head": [np.round(v, 4).tolist() for v in trained],
               "init_per_head": [np.round(v, 4).tolist() for v in initial]}
    return plots.export_view("nonlocality", figures, numbers)


def build_nonlocality_tab(c) -> None:
    c.nonlocality_image = plot("This image: per layer and head, trained vs at init", "nonlocality-image")
    over_training = plot("Over training: ConViT vs DeiT (shipped histories)", "nonlocality-history")
    export_button, files = export_row("nonlocality", "HTML, JSON")
    with gr.Accordion("Learn: what nonlocality measures", open=False):
        gr.Markdown(LEARN)
    c.demo_load(render_training, None, over_training, api_name="nonlocality_history")
    wire_export(export_button, export, [c.image, c.model, c.weights], files, "export_nonlocality")
