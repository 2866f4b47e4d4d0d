"""Gates σ(λ): per block and head for the loaded checkpoint, and across training from the shipped history."""
from __future__ import annotations

import gradio as gr

from app import plots
from app.answers import ANSWERS, by_inputs, shares
from app.queue_policy import slow
from app.service import Service, training_pair
from app.tabs.common import EACH_CHANGE, Shared, export_row, learn, plot, wire_export
from petl_core.curves import GATE_AT_INIT, TrainingCurves

LEARN = f"""
**The gate σ(λ)** of a GPSA head is a single learned number per head: the weight of positional attention in the
head's mix (1 = purely positional, convolution-like; 0 = purely content-based, like a plain ViT head). ConViT starts
every gate at σ(1) ≈ {GATE_AT_INIT:.2f}, so the model begins local. The colours are centred on that value: white = still
at init, red = more positional than at init, blue = more content-based.

**What the paper found** (ImageNet, 300 epochs): gates fall during training, most in the later GPSA blocks, which
end up nearly ignoring position, while some early heads stay local. **What this project measured** is in the note
above the plots, read from the shown run's history. Adam moves a parameter by at most about its learning rate per
step, so a gate can travel at most Σlr (the run's summed learning rate, also in the note): the paper's recipe gives
Σlr ≈ 190; the CPU runs shipped here with the same recipe 0.5-1.4, too little to move σ(λ) far. Drag the
slider to see each evaluation point. The Findings tab and docs/findings.md say more.
"""


def _measured(name: str, history: dict) -> str:
    """What the gates of the run did, in numbers from its history."""
    last = history["entries"][-1]
    gates = TrainingCurves.of(history).gates  # (T, blocks, H)
    start, end = gates[0].mean(-1), gates[-1].mean(-1)
    heads = gates[-1].ravel()
    reach = ", ".join(f"{group} {value:.2g}" for group, value in (last.get("lr_sum") or {}).items())
    return (f"Training history of {name}: mean σ(λ) per GPSA block "
            f"{' / '.join(f'{a:.2f}' for a in start)} at step 0 → {' / '.join(f'{b:.2f}' for b in end)} at step "
            f"{last['step']}; single heads end between {min(heads):.2f} and {max(heads):.2f}."
            + (f" Σlr per parameter group: {reach}." if reach else ""))


class GatesView:
    """The gates endpoints, from the shipped histories and the loaded checkpoints of `service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def _shown(self, model: str) -> tuple[str | None, dict | None, str]:
        """(name, history, prefix of the note): `model`'s own shipped history with gates, else that of the shipped
        ConViT trained on the same data (or of the default model's ConViT)."""
        history = self.service.history(model)
        if history is not None and history["entries"] and history["entries"][0].get("gates"):
            return model, history, ""
        shown = training_pair(model).get("convit")
        history = self.service.history(shown) if shown else None
        return shown, history, (f"{model} has no shipped training history with gates; showing the shipped ConViT "
                                f"{shown}. ")

    @shares(by_inputs)
    def render(self, model: str) -> tuple:
        """σ(λ) over training (interactive, slider over evaluation points) from the shipped history of `model` or of
        its stand-in (`_shown`), and a note saying which, with what the gates did."""
        shown, history, prefix = self._shown(model)
        if history is None:
            return plots.message_figure("no shipped ConViT history in assets/"), "No history shipped."
        return plots.gates_over_training(history), (f"{prefix}{_measured(shown, history)} "
                                                    f"{len(history['entries'])} evaluation points over "
                                                    f"{history['steps']} steps.")

    @slow
    def export(self, model: str) -> list[str]:
        """The gates as files: of the loaded checkpoint and over training (HTML), and their values (JSON)."""
        figure, note = self.render(model)
        _, history, _ = self._shown(model)
        blocks, checkpoint = self.service.checkpoint_gates(model)
        figures = {"over_training": figure}
        if checkpoint is not None:
            figures["checkpoint"] = plots.gates_heatmap(checkpoint, blocks, f"σ(λ) of {model}")
        numbers = {"note": note, "checkpoint": {"blocks": blocks, "sigma_lambda": checkpoint},
                   "entries": [{"step": e["step"], "epoch": e["epoch"], "gates": e["gates"]}
                               for e in history["entries"]] if history else []}
        return plots.export_view("gates", figures, numbers)


def build_gates_tab(shared: Shared, service: Service) -> gr.Plot:
    """The tab's layout and endpoints (/gates_history, /export_gates); returns the plot of the analysed checkpoint's
    gates, which /analyze draws."""
    view = GatesView(service)
    gates_now = plot("σ(λ) of the loaded checkpoint (block × head)", "gates-now")
    note = gr.Markdown()
    over_training = plot("σ(λ) across training", "gates-history")
    export_button, files = export_row("gates", "HTML, JSON")
    learn("what a gate is", LEARN)
    gr.on([shared.model.change, shared.demo.load], view.render, [shared.model], [over_training, note],
          api_name="gates_history", **EACH_CHANGE)
    shared.warm_ups.append(lambda model, image: ANSWERS.answering(view.render)(model))
    wire_export(shared, export_button, view.export, [shared.model], files, "export_gates")
    return gates_now
