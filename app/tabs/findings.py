"""Findings: the sample-efficiency and PETL results measured by this project, next to the papers' numbers."""
from __future__ import annotations

import gradio as gr

from app import plots
from app.queue_policy import slow
from app.tabs.common import EACH_CHANGE, Shared, export_row, learn, plot, wire_export
from petl_core import findings

LEARN = """
**Sample efficiency** (ConViT paper, Table 2): with less data, a convolutional prior should help more. Each point is
a ConViT and a DeiT of the same size trained here for the same number of steps on a fraction of a training set
(which one, and for how long: under the plot), next to the paper's ConViT-S vs DeiT-S on ImageNet. Our tasks are
far smaller than ImageNet, so the absolute numbers differ; compare the *gap*, and how it changes with the data.

**Parameter-efficient transfer** (Convpass paper): a DeiT trained here on one task is frozen and adapted to another
(which: under the plot) with a linear probe, Convpass on attention only, Convpass on attention and MLP, or full
fine-tuning; on the whole training split and at 1 to 16 images per class. We report the accuracy after the last
epoch (the official code reports the best test epoch, which flatters). Error bars: standard deviation over seeds.

Each finding has its own choice of training budget: the list opens on the runs that decide it; the others are the
shorter or older runs, kept for the record.
"""


def _table_sample(rows: list[dict]) -> str:
    lines = ["| fraction | DeiT | ConViT | gap | DeiT-S (paper) | ConViT-S (paper) | gap (paper) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [f"{r[m]['mean']:.1f} (n={len(r[m]['runs'])})" if r[m]["mean"] is not None else "–"
                 for m in ("deit", "convit")]
        gap = "–" if r["relative_gap"] is None else f"{r['relative_gap']:+.1f}%"
        paper = r["paper"]
        tail = f"{paper['deit']} | {paper['convit']} | {paper['relative_gap']:+.0f}%" if paper else "– | – | –"
        lines.append(f"| {r['fraction']:.0%} | {cells[0]} | {cells[1]} | {gap} | {tail} |")
    return "\n".join(lines)


def _table_petl(summary: dict) -> str:
    shots = summary["shots"]
    header = f"| method | trainable params | {summary['full_images']:,} images |"
    lines = [header + "".join(f" {s}-shot |" for s in shots), "|---|---:|---:|" + "---:|" * len(shots)]
    for m in summary["methods"]:
        cells = summary["accuracy"][m]
        text = [f"{cells[k]['mean']:.1f}" if cells[k]["mean"] is not None else "–"
                for k in ["full", *map(str, shots)]]
        lines.append(f"| {m} | {summary['parameters'][m]:,} | " + " | ".join(text) + " |")
    paper = " · ".join(f"{m} {p:g} M params, {acc}%" for m, (p, acc) in findings.PAPER_CONVPASS_VTAB.items())
    return "\n".join(lines) + f"\n\nConvpass paper, VTAB-1K average on ViT-B/16: {paper}."


def _choices(finding: str) -> list[tuple[str, str]]:
    """The budgets with `finding` results as (label, value), the one that decides it first."""
    return [(f"{b} (shipped models)" if b in findings.SHIPPED_BUDGETS else b, b)
            for b in findings.budgets_with(finding)]


def _first(finding: str) -> str | None:
    return next((b for _, b in _choices(finding)), None)


def render(sample_budget: str | None = None, petl_budget: str | None = None) -> tuple:
    """The sample-efficiency results of `sample_budget` and the PETL results of `petl_budget` (each by default the
    budget that decides it) as interactive plots and Markdown tables, read from assets/results."""
    sample = findings.load_results("sample_efficiency", sample_budget or _first("sample_efficiency") or "")
    petl = findings.load_results("petl", petl_budget or _first("petl") or "")
    if sample and sample["runs"]:
        rows = findings.sample_efficiency_summary(sample)
        source = sample["data"]["source"]
        sample_fig = plots.sample_efficiency_figure(rows, source)
        sample_md = f"**{source}.** {sample['protocol']}.\n\n{_table_sample(rows)}"
    else:
        sample_fig, sample_md = plots.message_figure("sample-efficiency runs not made yet"), ""
    if petl and petl["runs"]:
        summary = findings.petl_summary(petl)
        data = petl.get("data")  # (older results say it in the protocol only)
        title = f"**{data['source']} → {data['target']}.** " if data else ""
        petl_fig = plots.petl_figure(summary, data["target"] if data else "the target task")
        petl_md = f"{title}{petl['protocol']}.\n\n{_table_petl(summary)}"
    else:
        petl_fig, petl_md = plots.message_figure("PETL runs not made yet"), ""
    return sample_fig, sample_md, petl_fig, petl_md


@slow
def export(sample_budget: str | None = None, petl_budget: str | None = None) -> list[str]:
    """Both findings as files: the plots (HTML) and the grouped results with the papers' numbers (JSON)."""
    sample_budget = sample_budget or _first("sample_efficiency")
    petl_budget = petl_budget or _first("petl")
    sample_fig, _, petl_fig, _ = render(sample_budget, petl_budget)
    sample = findings.load_results("sample_efficiency", sample_budget or "")
    petl = findings.load_results("petl", petl_budget or "")
    numbers = {"sample_efficiency_budget": sample_budget, "petl_budget": petl_budget,
               "sample_efficiency": findings.sample_efficiency_summary(sample) if sample else None,
               "petl": findings.petl_summary(petl) if petl else None,
               "paper_convpass_vtab_params_millions_and_average": findings.PAPER_CONVPASS_VTAB}
    return plots.export_view("findings", {"sample_efficiency": sample_fig, "petl": petl_fig}, numbers)


def build_findings_tab(shared: Shared) -> None:
    """The tab's layout and endpoints (/findings, /export_findings): it shows files, so it needs no service."""
    how = ("each is a whole `python -m experiments.make_assets --budget NAME`; the protocol under the plot says how "
           "long its runs trained")
    sample_budget = gr.Radio(_choices("sample_efficiency"), value=_first("sample_efficiency"),
                             label="Sample efficiency: runs of the training budget", info=how,
                             elem_id="findings-sample-budget")
    sample_fig = plot("Sample efficiency: ConViT vs DeiT on fractions of a training set (which: below)",
                      "findings-sample")
    sample_md = gr.Markdown(elem_id="findings-sample-text")
    petl_budget = gr.Radio(_choices("petl"), value=_first("petl"), label="Parameter-efficient transfer: runs of the "
                           "training budget", info=how, elem_id="findings-petl-budget")
    petl_fig = plot("Parameter-efficient transfer: a DeiT trained here, frozen and adapted to another task (which: "
                    "below)", "findings-petl")
    petl_md = gr.Markdown(elem_id="findings-petl-text")
    export_button, files = export_row("findings", "HTML, JSON")
    learn("what these experiments test", LEARN)
    outputs, budgets = [sample_fig, sample_md, petl_fig, petl_md], [sample_budget, petl_budget]
    shared.demo.load(render, budgets, outputs, api_name="findings")
    gr.on([sample_budget.change, petl_budget.change], render, budgets, outputs, api_visibility="private",
          **EACH_CHANGE)
    wire_export(shared, export_button, export, budgets, files, "export_findings")
