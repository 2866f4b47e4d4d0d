"""Gates σ(λ): per block and head for the loaded checkpoint, and across training from the shipped history."""
from __future__ import annotations

import gradio as gr
import torch

from app import plots, service
from app.tabs.common import export_row, plot, wire_export

LEARN = """
**The gate σ(λ)** of a GPSA head is a single learned number per head: the weight of positional attention in the
head's mix (1 = purely positional, convolution-like; 0 = purely content-based, like a plain ViT head). ConViT starts
every gate at σ(1) ≈ 0.73, so the model begins local.

**What the paper found** (ImageNet, 300 epochs): gates fall during training, most in the later GPSA blocks, which
end up nearly ignoring position, while some early heads stay local. **What this project measured** on Fashion-MNIST
(1,872 steps on a CPU, and 2,808 in a longer run): the gates hardly moved (mean 0.721 to 0.742 per block,
from 0.731). Drag the slider to
see each evaluation point. The Findings tab and docs/findings.md say more.
"""

_REFERENCE = "convit_fmnist"


def render(model: str) -> tuple:
    """σ(λ) over training (interactive, slider over evaluation points) from the shipped history of `model`, or of
    the shipped ConViT when `model` has none; and a note saying which."""
    history = service.history(model)
    if history is None or not history["entries"] or not history["entries"][0].get("gates"):
        history, note = service.history(_REFERENCE), (f"{model} has no shipped training history with gates; showing "
                                                      f"the shipped ConViT ({_REFERENCE}).")
    else:
        note = f"Training history of {model}."
    if history is None:
        return plots.message_figure("no shipped ConViT history in assets/"), "No history shipped."
    steps = history["steps"]
    return plots.gates_over_training(history), f"{note} {len(history['entries'])} evaluation points over {steps} steps."


def export(model: str) -> list[str]:
    """The gates as files: of the loaded checkpoint and over training (HTML), and their values (JSON)."""
    figure, note = render(model)
    history = service.history(model) or service.history(_REFERENCE)
    gated = [(i, b.attn.gating_param) for i, b in enumerate(service.get_model(model).model.blocks)
             if hasattr(b.attn, "gating_param")]
    figures = {"over_training": figure}
    checkpoint = None
    if gated:
        checkpoint = torch.sigmoid(torch.stack([g for _, g in gated])).cpu().numpy()
        figures["checkpoint"] = plots.gates_heatmap(checkpoint, [i for i, _ in gated], f"σ(λ) of {model}")
    numbers = {"note": note, "checkpoint": {"blocks": [i for i, _ in gated], "sigma_lambda": checkpoint},
               "entries": [{"step": e["step"], "epoch": e["epoch"], "gates": e["gates"]}
                           for e in history["entries"]] if history else []}
    return plots.export_view("gates", figures, numbers)


def build_gates_tab(c) -> None:
    c.gates_now = plot("σ(λ) of the loaded checkpoint (block × head)", "gates-now")
    note = gr.Markdown()
    over_training = plot("σ(λ) across training", "gates-history")
    export_button, files = export_row("gates", "HTML, JSON")
    with gr.Accordion("Learn: what a gate is", open=False):
        gr.Markdown(LEARN)
    gr.on([c.model.change, c.demo_load], render, [c.model], [over_training, note], api_name="gates_history")
    wire_export(export_button, export, [c.model], files, "export_gates")
