"""Nonlocality: curves over training (ConViT next to DeiT) and this image's nonlocality against the model at init."""
from __future__ import annotations

import gradio as gr
import numpy as np

from app import plots
from app.answers import ANSWERS, by_inputs, shares
from app.queue_policy import slow
from app.service import Service, training_pair
from app.tabs.common import EACH_CHANGE, Shared, export_row, learn, plot, wire_export
from petl_core.curves import TrainingCurves

LEARN = """
**Nonlocality** (ConViT paper, Eq. 8) is how far, on average, a head looks: the attention-weighted distance between
each query patch and the key patches, D = (1/P) Σ_i Σ_j A_ij ‖δ_ij‖, in patches, averaged over the queries. A head
attending only to its own patch scores 0; uniform attention over the grid scores about 0.52 × its side (4.1 on
an 8×8 grid, 6.2 on 12×12).

**Over training**: the shipped ConViT next to the shipped DeiT trained on the same images, measured on fixed test
images at each evaluation point. ConViT's GPSA blocks start local (about 2 patches) because of their convolutional
initialisation; DeiT's blocks start near the uniform value. The paper saw GPSA nonlocality rise as the model learns
to use content, and DeiT's early blocks become more local. The note above the curves gives the numbers of the
runs shown.

**On your image**: each dot is one head, the line the block mean, for the loaded checkpoint (red) and the same
architecture at initialisation (gray), on the same input.
"""


SETTLED = 0.1
"""A change of nonlocality under this many patches over a run counts as none."""


def versus_paper(by_key: dict[str, tuple[str, dict]]) -> list[str]:
    """"Ours vs the paper" for the two trends the ConViT paper reports (Fig. 5), read from the runs' histories
    (`by_key`: "convit" / "deit" → (label, history)): GPSA blocks' nonlocality rises over training; DeiT's early
    blocks (as many as the ConViT has GPSA blocks) become more local. Per trend: in how many blocks ours moved that
    way by at least SETTLED patches, the numbers, and reproduced / partly / not reproduced."""
    if "convit" not in by_key:
        return []
    convit = by_key["convit"][1]
    gpsa = len(convit["entries"][0].get("gates") or [])
    claims = [("convit", "GPSA blocks' nonlocality rises as they learn to use content", +1, "rose", "GPSA"),
              ("deit", "DeiT's early blocks become more local", -1, "fell", "first")]
    lines = []
    for key, claim, sign, verb, which in claims:
        if key not in by_key or not gpsa:
            continue
        label, history = by_key[key]
        start, end = TrainingCurves.of(history).nonlocality[[0, -1]][:, :gpsa]
        moved = int(np.sum(sign * (end - start) >= SETTLED))
        verdict = "reproduced" if moved == gpsa else "not reproduced" if moved == 0 else "partly reproduced"
        numbers = ", ".join(f"{a:.2f} → {b:.2f}" for a, b in zip(start, end, strict=True))
        lines.append(f"**Ours vs the paper.** The paper: {claim}. Ours, {label} over {history['steps']:,} steps (the "
                     f"paper trained 300 ImageNet epochs): {verb} by {SETTLED} patches or more in {moved} of its "
                     f"{gpsa} {which} blocks ({numbers}): **{verdict}**.")
    return lines


class NonlocalityView:
    """The nonlocality endpoints, from the shipped histories and the analyses of `service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    @shares(by_inputs)
    def render_training(self, model: str | None = None) -> tuple:
        """Nonlocality per block over training: the shipped ConViT next to the shipped DeiT trained on the same data
        as `model` (interactive), and a note with the measured change per block."""
        pair = training_pair(model)
        by_key = {key: (f"{label} ({name})", h) for label, key in (("ConViT", "convit"), ("DeiT", "deit"))
                  if (name := pair.get(key)) and (h := self.service.history(name)) is not None}
        histories = dict(by_key.values())
        if not histories:
            return plots.message_figure("no shipped training histories in assets/"), "No training history shipped."
        lines = []
        for label, history in histories.items():
            start, end = TrainingCurves.of(history).nonlocality[[0, -1]]
            change = ", ".join(f"{a:.2f} → {b:.2f}" for a, b in zip(start, end, strict=True))
            lines.append(f"**{label}**, {history['steps']} steps, blocks 0-{len(start) - 1}: {change} patches.")
        return plots.nonlocality_over_training(histories), "\n\n".join(lines + versus_paper(by_key))

    @slow
    def export(self, image: str | None, model: str, weights: str | None, invert: bool = True) -> list[str]:
        """Both nonlocality views as files (HTML) and the numbers per block and head (JSON)."""
        from petl_core.metrics import uniform_nonlocality

        result = self.service.result_for(image, model, weights, invert=invert)
        trained = [v[0].numpy() for v in result.analysis.nonlocality]
        initial = [v[0].numpy() for v in result.analysis.init_nonlocality]
        figures = {"over_training": self.render_training(model)[0],
                   "image": plots.image_nonlocality_figure(trained, initial, f"nonlocality of {model} on this image",
                                                           uniform_nonlocality(result.trace.grid))}
        numbers = {"model": model, "unit": "patches", "trained_per_head": [np.round(v, 4).tolist() for v in trained],
                   "init_per_head": [np.round(v, 4).tolist() for v in initial]}
        return plots.export_view("nonlocality", figures, numbers)


def build_nonlocality_tab(shared: Shared, service: Service) -> gr.Plot:
    """The tab's layout and endpoints (/nonlocality_history, /export_nonlocality); returns the plot of this image's
    nonlocality, which /analyze draws."""
    view = NonlocalityView(service)
    image_plot = plot("This image: per block and head, trained vs at init", "nonlocality-image")
    note = gr.Markdown(elem_id="nonlocality-note")
    over_training = plot("Over training: ConViT vs DeiT (shipped histories)", "nonlocality-history")
    export_button, files = export_row("nonlocality", "HTML, JSON")
    learn("what nonlocality measures", LEARN)
    gr.on([shared.model.change, shared.demo.load], view.render_training, [shared.model], [over_training, note],
          api_name="nonlocality_history", **EACH_CHANGE)
    shared.warm_ups.append(lambda model, image: ANSWERS.answering(view.render_training)(model))
    wire_export(shared, export_button, view.export, [shared.image, shared.model, shared.weights, shared.invert], files,
                "export_nonlocality")
    return image_plot
