"""Figures and tables of the findings, from the shipped histories and assets/results/<budget>/*.json.

    python -m experiments.report        # writes docs/figures/*.png and docs/results.md

Everything it prints or draws is read from files that `experiments.make_assets` wrote; nothing is typed in here
except the papers' published numbers, which are labelled as such.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from petl_core import findings
from petl_core.diagnostics import TrainingCurves

ROOT = Path(__file__).resolve().parents[1]
RESULTS = findings.RESULTS
FIGURES = ROOT / "docs" / "figures"

def gates_figure(history: dict) -> Figure:
    """ConViT Fig. 6: σ(λ) per head (thin) and its mean (black) per GPSA block, against epochs."""
    curves = TrainingCurves.of(history)
    epochs, gates = curves.epochs, curves.gates  # (T,), (T, blocks, H)
    blocks = gates.shape[1]
    fig = Figure(figsize=(3.0 * blocks, 2.8), layout="constrained")
    axes = fig.subplots(1, blocks, squeeze=False)[0]
    for b, ax in enumerate(axes):
        for h in range(gates.shape[2]):
            ax.plot(epochs, gates[:, b, h], lw=0.8, alpha=0.7)
        ax.plot(epochs, gates[:, b].mean(-1), color="black", lw=2)
        ax.set_ylim(0, 1)
        ax.set_title(f"GPSA block {b}")
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("σ(λ): positional attention")
    return fig


def nonlocality_figure(histories: dict[str, dict]) -> Figure:
    """ConViT Fig. 5: nonlocality (patches, mean over heads and 1,024 test images) per block (numbered from 0, as in
    the app) against epochs."""
    fig = Figure(figsize=(5.0 * len(histories), 3.2), layout="constrained")
    axes = fig.subplots(1, len(histories), squeeze=False, sharey=True)[0]
    for ax, (label, history) in zip(axes, histories.items(), strict=True):
        curves = TrainingCurves.of(history)
        epochs, values = curves.epochs, curves.nonlocality
        colours = [f"C{i}" for i in range(values.shape[1])]
        for layer in range(values.shape[1]):
            ax.plot(epochs, values[:, layer], color=colours[layer], label=f"block {layer}")
        ax.set_title(label)
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("nonlocality (patches)")
    axes[-1].legend(fontsize=7, ncol=2)
    return fig


def _mean_sd(stats: dict) -> str:
    """'mean ± sd (n=k)' of accuracies in %, or '–' without runs."""
    if not stats["runs"]:
        return "–"
    spread = f" ± {stats['sd']:.1f}" if stats["sd"] is not None else ""
    return f"{stats['mean']:.1f}{spread} (n={len(stats['runs'])})"


def sample_efficiency(results: dict) -> tuple[str, Figure]:
    rows = findings.sample_efficiency_summary(results)
    lines = ["| fraction | DeiT (ours) | ConViT (ours) | gap | DeiT-S (paper) | ConViT-S (paper) | gap (paper) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.subplots()
    fractions = [r["fraction"] for r in rows]
    for method in ("deit", "convit"):
        ax.plot(fractions, [np.nan if r[method]["mean"] is None else r[method]["mean"] for r in rows], marker="o",
                label=method)
    for r in rows:
        paper = r["paper"]
        paper_cols = f"{paper['deit']} | {paper['convit']} | {paper['relative_gap']:+.0f}%" if paper else "– | – | –"
        gap = "–" if r["relative_gap"] is None else f"{r['relative_gap']:+.1f}%"
        lines.append(f"| {r['fraction']:.0%} | {_mean_sd(r['deit'])} | {_mean_sd(r['convit'])} | {gap} | "
                     f"{paper_cols} |")
    curves = [r for r in results["runs"] if r.get("curve") and r["seed"] == 0]
    if curves:  # is the budget data-limited? then accuracy would grow with the fraction at the end
        # early evaluation points depend on the epoch length, so keep the steps every run evaluated at
        steps = sorted(set.intersection(*({step for step, _ in r["curve"]} for r in curves)))
        lines += ["", "Test accuracy (%) at the steps every run evaluated at, seed 0:", "",
                  "| model | fraction | " + " | ".join(f"step {s}" for s in steps) + " |",
                  "|---|---:|" + "---:|" * len(steps)]
        for r in sorted(curves, key=lambda r: (r["method"], r["fraction"])):
            accuracy = dict(r["curve"])
            lines.append(f"| {r['method']} | {r['fraction']:.0%} | "
                         + " | ".join(f"{100 * accuracy[s]:.1f}" for s in steps) + " |")
    ax.set_xscale("log")
    ax.set_xlabel(f"fraction of {results['data']['source']}")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    return "\n".join(lines), fig


def petl(results: dict) -> tuple[str, Figure]:
    summary = findings.petl_summary(results)
    shots = summary["shots"]
    full = f"{summary['full_images']:,} images"
    header = f"| method | trainable params | {full} |" + "".join(f" {s}-shot |" for s in shots)
    lines = [header, "|---|---:|" + "---:|" * (1 + len(shots))]
    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.subplots()
    for i, m in enumerate(summary["methods"]):
        cells = summary["accuracy"][m]
        text = [_mean_sd(cells["full"])] + [_mean_sd(cells[str(s)]) for s in shots]
        lines.append(f"| {m} | {summary['parameters'][m]:,} | " + " | ".join(text) + " |")
        if shots:
            means = [cells[str(s)]["mean"] for s in shots]
            ax.plot(shots, [np.nan if v is None else v for v in means], marker="o", label=m)
        elif cells["full"]["mean"] is not None:  # no few-shot runs: the whole split, one bar per method
            ax.bar(i, cells["full"]["mean"], yerr=cells["full"]["sd"] or 0, capsize=3, label=m)
    chosen = [r for r in results["runs"] if r.get("chosen", True) and "validation_chosen_accuracy" in r]
    if chosen:
        lines += ["", "Where the learning rate was chosen on the validation split (1,000-image setting; test accuracy "
                  "%, per seed):", "", "| method | seed | lr chosen | last epoch | at the validation-chosen point | "
                  "at the best test point (flatters) |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['method']} | {r['seed']} | {r['lr']:g} | {100 * r['last_epoch_accuracy']:.1f} | "
                  f"{100 * r['validation_chosen_accuracy']:.1f} (step {r['validation_chosen_step']}) | "
                  f"{100 * r['best_evaluated_accuracy']:.1f} |" for r in sorted(chosen, key=lambda r: (r['method'],
                                                                                                  r['seed']))]
    if shots:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training images per class")
    else:
        ax.set_xticks(range(len(summary["methods"])), summary["methods"], fontsize=8)
        ax.set_xlabel(f"{full}; error bars: sd over seeds")
    ax.set_ylabel("last-epoch test accuracy (%)")
    ax.legend(fontsize=8)
    return "\n".join(lines), fig


# The runs of a budget's shipped stage whose dynamics are reported: label -> histories/<file>.json
PAIR_RUNS = {"DeiT": "deit", "ConViT": "convit", "ConViT, GPSA-lr variant": "convit_gpsa"}


def _gate_noise(diagnostic: dict) -> str:
    """'|mean| / sd of ∂L/∂λ: median m, k of n heads below 0.3' for one gate-gradient diagnostic."""
    ratio = np.abs(np.array(diagnostic["mean"])) / np.array(diagnostic["std"])
    return (f"median {np.median(ratio):.2f}, {int((ratio < 0.3).sum())} of {ratio.size} heads below 0.3 "
            f"({diagnostic['batches']} batches)")


def convit_section(label: str, history: dict, budget: str, slug: str) -> str:
    """Gates, strengths, centres, Σlr and the gate-gradient diagnostic of one ConViT run, first vs last entry."""
    gates_figure(history).savefig(FIGURES / f"gates_over_training_{slug}.png", dpi=110)
    first, last = history["entries"][0], history["entries"][-1]
    rows = []
    for b, (g0, g1, a0, a1, c0, c1) in enumerate(zip(first["gates"], last["gates"], first["strengths"],
                                                     last["strengths"], first["centres"], last["centres"],
                                                     strict=True)):
        moved = np.linalg.norm(np.array(c1) - np.array(c0), axis=-1)
        rows.append(f"| {b} | {np.mean(g0):.3f} | {np.mean(g1):.3f} | {np.min(g1):.3f}–{np.max(g1):.3f} | "
                    f"{np.mean(a0):.3f} | {np.mean(a1):.3f} | {np.max(moved):.2f} |")
    text = (f"### Gates σ(λ), positional strengths α and centres Δ of the {label} ({budget}: {history['steps']} "
            "steps), first and last evaluation\n\n| GPSA block | σ(λ) mean at init | σ(λ) mean at end | heads at end | "
            "α mean at init | α mean at end | largest move of a centre (patches) |\n"
            "|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n")
    if "nonlocality" in last:  # (per head: does a head that keeps its positional prior stay local?)
        gates = np.ravel(last["gates"])
        nonlocality = np.ravel([last["nonlocality"][b] for b in range(len(last["gates"]))])
        text += (f"\nAcross the {gates.size} GPSA heads at the last evaluation, σ(λ) and the head's nonlocality "
                 f"correlate with r = {np.corrcoef(gates, nonlocality)[0, 1]:.2f} (Pearson).\n")
    if last.get("lr_sum"):
        text += "\nΣlr per parameter group over the run: " + ", ".join(
            f"`{group}` {value:.3g}" for group, value in last["lr_sum"].items()) + ".\n"
    if history.get("gate_grad"):
        text += "\nGate-gradient diagnostic, |mean| / sd of ∂L/∂λ over the same training batches: " + "; ".join(
            f"at step {d['step']}: {_gate_noise(d)}" for d in history["gate_grad"].values()) + ".\n"
    return text + f"\n![gates](figures/gates_over_training_{slug}.png)\n"


def dynamics_sections(budget: str) -> list[str]:
    """Gates, positional strengths, nonlocality and accuracy over training of the budget's shipped ConViT/DeiT runs
    (and of its ConViT variant, if it has one)."""
    runs = {label: h for label, name in PAIR_RUNS.items()
            if (h := findings.load_results(f"histories/{name}", budget, RESULTS))}
    sections = []
    for label, name in PAIR_RUNS.items():
        if label in runs and "gates" in runs[label]["entries"][0]:
            slug = budget if name == "convit" else f"{budget}_{name}"
            sections.append(convit_section(label, runs[label], budget, slug))
    if "DeiT" in runs and len(runs) > 1:
        nonlocality_figure({k: runs[k] for k in runs}).savefig(FIGURES / f"nonlocality_over_training_{budget}.png",
                                                               dpi=110)
        rows = []
        for label, h in runs.items():
            start = [np.mean(v) for v in h["entries"][0]["nonlocality"]]
            end = [np.mean(v) for v in h["entries"][-1]["nonlocality"]]
            rows.append(f"| {label} | " + " | ".join(f"{a:.2f} → {b:.2f}" for a, b in zip(start, end, strict=True))
                        + f" | {100 * h['entries'][-1]['test_accuracy']:.2f} |")
        accuracy = {label: {e["step"]: (e["test_accuracy"], e.get("test_images")) for e in h["entries"]}
                    for label, h in runs.items()}
        steps = sorted(set.intersection(*(set(a) for a in accuracy.values())))
        partial = sorted({(s, n) for acc in accuracy.values() for s in steps if (n := acc[s][1])
                          and n < runs["DeiT"]["data"]["test_images"]})
        scored = (f" Steps {', '.join(str(s) for s, _ in partial)} scored the first "
                  f"{' / '.join(sorted({f'{n:,}' for _, n in partial}))} test images, the others all "
                  f"{runs['DeiT']['data']['test_images']:,}.") if partial else ""
        sections.append(f"### Test accuracy (%) at each evaluation point ({budget})\n\n| step | "
                        + " | ".join(str(s) for s in steps) + " |\n|---|" + "---:|" * len(steps) + "\n"
                        + "\n".join(f"| {label} | " + " | ".join(f"{100 * acc[s][0]:.1f}" for s in steps) + " |"
                                     for label, acc in accuracy.items()) + f"\n{scored}\n")
        layers = len(runs["DeiT"]["entries"][0]["nonlocality"])
        sections.append(f"### Nonlocality per block (patches), first → last evaluation ({budget})\n\n| model | "
                        + " | ".join(f"block {i}" for i in range(layers)) + " | test accuracy (%) |\n|---|"
                        + "---:|" * (layers + 1) + "\n" + "\n".join(rows)
                        + f"\n\n![nonlocality](figures/nonlocality_over_training_{budget}.png)\n")
    return sections


def budget_sections(budget: str) -> str:
    """Everything one budget measured: the pair's dynamics, sample efficiency, PETL, and the time it took where."""
    shipped = " (shipped models)" if budget in findings.SHIPPED_BUDGETS else ""
    sections = [f"## Budget `{budget}`{shipped}\n\nMade by `python -m experiments.make_assets --budget {budget}`.\n",
                *dynamics_sections(budget)]
    for name, title, make in (("sample_efficiency", "Sample efficiency", sample_efficiency),
                              ("petl", "PETL: the DeiT frozen and adapted to another task", petl)):
        results = findings.load_results(name, budget, RESULTS)
        if results:
            if results.get("data"):  # (older results name the data in their protocol only)
                data = results["data"]
                title = f"{title}: {data['source']}" + (f" → {data['target']}" if "target" in data else "")
            table, fig = make(results)
            fig.savefig(FIGURES / f"{name}_{budget}.png", dpi=110)
            sections.append(f"### {title} ({budget})\n\n{results['protocol']}.\n\n{table}\n\n"
                            f"![{name}](figures/{name}_{budget}.png)\n")
    timings = findings.load_results("timings", budget, RESULTS)
    if timings:
        per_stage = defaultdict(lambda: [0.0, 0])
        for r in timings:
            gpu = f" ({r['gpu']})" if r.get("gpu") else ""
            threads = f", {r['threads']} thread(s)" if r.get("threads") else ""  # older records lack it
            where = f"{r['device']}{gpu}{threads}"
            per_stage[(r["stage"], where)][0] += r["run_wall_time_s"]
            per_stage[(r["stage"], where)][1] += 1
        lines = [f"### Time taken ({budget})\n", "| stage | where | runs | run time (s, summed) |",
                 "|---|---|---:|---:|"]
        lines += [f"| {stage} | {where} | {n} | {t:.0f} |" for (stage, where), (t, n) in per_stage.items()]
        suite = findings.load_results("suite", budget, RESULTS)
        if suite:
            lines += ["", f"The last call of the command (stages: {', '.join(suite['stages'])}; seeds: "
                          f"{', '.join(map(str, suite['seeds']))}) took {suite['wall_time_s']:.0f} s "
                          f"({suite['wall_time_s'] / 3600:.2f} h) of wall time; it trained {suite['trained_now']} of "
                          f"its {suite['runs']} runs, {suite['jobs']} at a time on {suite['cpu_count']} CPU cores."]
        sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)


def main() -> int:
    FIGURES.mkdir(parents=True, exist_ok=True)
    sections = ["# Results (generated by `python -m experiments.report`; do not edit by hand)\n"]
    for budget in findings.budgets(RESULTS):
        sections.append(budget_sections(budget))
    (ROOT / "docs" / "results.md").write_text("\n".join(sections))
    print("\n".join(sections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
