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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "assets" / "results"
FIGURES = ROOT / "docs" / "figures"

def gates_figure(history: dict) -> Figure:
    """ConViT Fig. 6: σ(λ) per head (thin) and its mean (black) per GPSA block, against epochs."""
    entries = history["entries"]
    epochs = [e["epoch"] for e in entries]
    gates = np.array([e["gates"] for e in entries])  # (T, blocks, H)
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
    """ConViT Fig. 5: nonlocality (patches, mean over heads and 1,024 test images) per layer against epochs."""
    fig = Figure(figsize=(5.0 * len(histories), 3.2), layout="constrained")
    axes = fig.subplots(1, len(histories), squeeze=False, sharey=True)[0]
    for ax, (label, history) in zip(axes, histories.items(), strict=True):
        epochs = [e["epoch"] for e in history["entries"]]
        values = np.array([[np.mean(layer) for layer in e["nonlocality"]] for e in history["entries"]])
        colours = [f"C{i}" for i in range(values.shape[1])]
        for layer in range(values.shape[1]):
            ax.plot(epochs, values[:, layer], color=colours[layer], label=f"layer {layer + 1}")
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
    ax.set_xlabel("fraction of Fashion-MNIST")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    return "\n".join(lines), fig


def petl(results: dict) -> tuple[str, Figure]:
    summary = findings.petl_summary(results)
    shots = summary["shots"]
    header = "| method | trainable params | 1,000 images | " + " | ".join(f"{s}-shot" for s in shots) + " |"
    lines = [header, "|---|---:|" + "---:|" * (1 + len(shots))]
    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.subplots()
    for m in summary["methods"]:
        cells = summary["accuracy"][m]
        text = [_mean_sd(cells["full"])] + [_mean_sd(cells[str(s)]) for s in shots]
        lines.append(f"| {m} | {summary['parameters'][m]:,} | " + " | ".join(text) + " |")
        means = [cells[str(s)]["mean"] for s in shots]
        ax.plot(shots, [np.nan if v is None else v for v in means], marker="o", label=m)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training images per class")
    ax.set_ylabel("last-epoch test accuracy (%)")
    ax.legend(fontsize=8)
    return "\n".join(lines), fig


def dynamics_sections(budget: str) -> list[str]:
    """Gates, positional strengths, nonlocality and accuracy over training of the budget's ConViT/DeiT pair."""
    convit, deit = (findings.load_results(f"histories/{m}", budget, RESULTS) for m in ("convit", "deit"))
    sections = []
    if convit:
        gates_figure(convit).savefig(FIGURES / f"gates_over_training_{budget}.png", dpi=110)
        first, last = convit["entries"][0], convit["entries"][-1]
        rows = [f"| {b} | {np.mean(g0):.3f} | {np.mean(g1):.3f} | {np.min(g1):.3f}–{np.max(g1):.3f} | "
                f"{np.mean(a0):.3f} | {np.mean(a1):.3f} |"
                for b, (g0, g1, a0, a1) in enumerate(zip(first["gates"], last["gates"], first["strengths"],
                                                         last["strengths"], strict=True))]
        sections.append(f"### Gates σ(λ) and positional strengths α of the ConViT ({budget}: {convit['steps']} "
                        "steps), first and last evaluation\n\n| GPSA block | σ(λ) mean at init | σ(λ) mean at end | "
                        "heads at end | α mean at init | α mean at end |\n|---:|---:|---:|---:|---:|---:|\n"
                        + "\n".join(rows) + f"\n\n![gates](figures/gates_over_training_{budget}.png)\n")
    if convit and deit:
        nonlocality_figure({"DeiT": deit, "ConViT": convit}).savefig(
            FIGURES / f"nonlocality_over_training_{budget}.png", dpi=110)
        rows = []
        for label, h in (("DeiT", deit), ("ConViT", convit)):
            start = [np.mean(v) for v in h["entries"][0]["nonlocality"]]
            end = [np.mean(v) for v in h["entries"][-1]["nonlocality"]]
            rows.append(f"| {label} | " + " | ".join(f"{a:.2f} → {b:.2f}" for a, b in zip(start, end, strict=True))
                        + f" | {100 * h['entries'][-1]['test_accuracy']:.2f} |")
        accuracy = {label: {e["step"]: e["test_accuracy"] for e in h["entries"]}
                    for label, h in (("DeiT", deit), ("ConViT", convit))}
        steps = sorted(set(accuracy["DeiT"]) & set(accuracy["ConViT"]))
        sections.append(f"### Test accuracy (%) of the pair at each evaluation point ({budget})\n\n| step | "
                        + " | ".join(str(s) for s in steps) + " |\n|---|" + "---:|" * len(steps) + "\n"
                        + "\n".join(f"| {label} | " + " | ".join(f"{100 * acc[s]:.1f}" for s in steps) + " |"
                                     for label, acc in accuracy.items()) + "\n")
        layers = len(deit["entries"][0]["nonlocality"])
        sections.append(f"### Nonlocality per layer (patches), first → last evaluation ({budget})\n\n| model | "
                        + " | ".join(f"layer {i + 1}" for i in range(layers)) + " | test accuracy (%) |\n|---|"
                        + "---:|" * (layers + 1) + "\n" + "\n".join(rows)
                        + f"\n\n![nonlocality](figures/nonlocality_over_training_{budget}.png)\n")
    return sections


def budget_sections(budget: str) -> str:
    """Everything one budget measured: the pair's dynamics, sample efficiency, PETL, and the time it took where."""
    shipped = " (the shipped models)" if budget == findings.SHIPPED_BUDGET else ""
    sections = [f"## Budget `{budget}`{shipped}\n\nMade by `python -m experiments.make_assets --budget {budget}`.\n",
                *dynamics_sections(budget)]
    for name, title, make in (("sample_efficiency", "Sample efficiency", sample_efficiency),
                              ("petl", "PETL on digits from the Fashion-MNIST DeiT", petl)):
        results = findings.load_results(name, budget, RESULTS)
        if results:
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
