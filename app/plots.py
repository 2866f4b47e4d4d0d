"""Interactive plotly figures, the clickable input picture and exports, all from arrays (no model code here).

Static grids of many maps are matplotlib figures from `petl_core.figures`; everything one wants to hover,
zoom or scrub is plotly here.
"""
from __future__ import annotations

import base64
import functools
import html
import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw
from plotly.subplots import make_subplots

from app import scratch
from petl_core.curves import GATE_AT_INIT, TrainingCurves
from petl_core.findings import PAPER_SAMPLE_EFFICIENCY
from petl_core.query import CLS, Query
from petl_core.scales import ATTENTION_LINEAR_RANGE, ATTENTION_LOG_RANGE, attention_colour_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "attention_heatmap",
    "bypass_ratio_figure",
    "centres_figure",
    "export_view",
    "gate_colour_bar",
    "gate_colour_scale",
    "gates_heatmap",
    "gates_over_training",
    "image_nonlocality_figure",
    "message_figure",
    "nonlocality_over_training",
    "patch_at",
    "petl_figure",
    "picker_image",
    "sample_efficiency_figure",
    "write_html",
]

PICKER_SIZE = 384
"""Longest side, in pixels, of the clickable picture of the model input."""


# --------------------------------------------------------------------------------------------------- input picture
def _picker_scale(image: np.ndarray) -> int:
    return max(1, PICKER_SIZE // max(image.shape[:2]))


def picker_image(image: np.ndarray, grid: tuple[int, int], query: Query) -> np.ndarray:
    """The model input (height, width, 3) in [0, 1], enlarged by an integer factor with the patch grid drawn and the
    query patch framed: (height·s, width·s, 3) uint8. Click coordinates map back with `patch_at`."""
    scale = _picker_scale(image)
    pixels = Image.fromarray((image * 255).round().astype(np.uint8)).resize(
        (image.shape[1] * scale, image.shape[0] * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(pixels)
    rows, cols = grid
    cell_h, cell_w = pixels.height / rows, pixels.width / cols
    for r in range(1, rows):
        draw.line([(0, r * cell_h), (pixels.width, r * cell_h)], fill=(255, 255, 255), width=1)
    for c in range(1, cols):
        draw.line([(c * cell_w, 0), (c * cell_w, pixels.height)], fill=(255, 255, 255), width=1)
    if not query.is_cls:
        r, c = query.patch
        draw.rectangle([c * cell_w, r * cell_h, (c + 1) * cell_w - 1, (r + 1) * cell_h - 1], outline=(0, 255, 255),
                       width=3)
    return np.asarray(pixels)


def patch_at(x: int, y: int, picture_shape: tuple[int, ...], grid: tuple[int, int]) -> tuple[int, int]:
    """The (row, col) patch under pixel (x, y) of a picture from `picker_image`."""
    height, width = picture_shape[:2]
    row = min(grid[0] - 1, max(0, int(y * grid[0] // height)))
    col = min(grid[1] - 1, max(0, int(x * grid[1] // width)))
    return row, col


MESSAGE_WIDTH = 48
"""Characters per line of `message_figure` (plotly does not wrap a text: one long line was cut off both sides of a
plot half the page wide)."""


def message_figure(text: str, height: int = 200) -> go.Figure:
    """An empty plot that says why there is nothing to show (a view that does not apply to this model), its text
    wrapped to lines of `MESSAGE_WIDTH` characters (taller for more lines)."""
    lines = textwrap.wrap(text, MESSAGE_WIDTH) or [""]
    fig = go.Figure()
    fig.add_annotation(text="<br>".join(html.escape(line) for line in lines), showarrow=False, x=0.5, y=0.5,
                       xref="paper", yref="paper", font={"size": 14})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=max(height, 40 + 22 * len(lines)), margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


# --------------------------------------------------------------------------------------------------- attention
def attention_heatmap(values: np.ndarray, image: np.ndarray, title: str, log_scale: bool,
                      query: Query = CLS) -> go.Figure:
    """One map (rows, cols) on the patches of the model input (height, width, 3); hover gives values. Each cell's
    colour is its value alone, on the fixed range every attention view shares (petl_core.figures.ATTENTION_LOG_RANGE,
    or ATTENTION_LINEAR_RANGE), never fitted to this map, and the colour bar says so: the picture is beside it in the
    page, not under it (it would tint the colours the bar is read by)."""
    rows, cols = values.shape
    height, width = image.shape[:2]
    if log_scale:
        low, high = np.log10(ATTENTION_LOG_RANGE)
        shown = np.log10(np.clip(values, *ATTENTION_LOG_RANGE))
        ticks = np.arange(np.ceil(low), np.floor(high) + 1)  # one per decade, labelled with the weight itself
        colour_bar = {"tickvals": ticks.tolist(), "ticktext": [f"{10 ** t:g}" for t in ticks]}
    else:
        (low, high), shown, colour_bar = ATTENTION_LINEAR_RANGE, values, {}
    fig = go.Figure()
    fig.add_trace(go.Heatmap(  # (in the image's pixel coordinates: pixel i covers [i, i + 1], as patch cells do)
        z=shown, x0=width / cols / 2, dx=width / cols, y0=height / rows / 2, dy=height / rows,
        zmin=float(low), zmax=float(high), colorscale="Inferno", customdata=values,
        hovertemplate="attention %{customdata:.4f}<extra></extra>",
        colorbar={"title": {"text": attention_colour_label(log_scale), "side": "right"}, **colour_bar}))
    fig.update_xaxes(tickvals=[(c + 0.5) * width / cols for c in range(cols)], ticktext=list(range(cols)),
                     showgrid=False, title="col")
    fig.update_yaxes(tickvals=[(r + 0.5) * height / rows for r in range(rows)], ticktext=list(range(rows)),
                     showgrid=False, title="row", autorange="reversed", scaleanchor="x")
    if not query.is_cls:
        r, c = query.patch
        fig.add_shape(type="rect", x0=c * width / cols, x1=(c + 1) * width / cols, y0=r * height / rows,
                      y1=(r + 1) * height / rows, line={"color": "cyan", "width": 3})
    fig.update_layout(title=title, margin={"l": 40, "r": 10, "t": 50, "b": 40}, height=460)
    return fig


# --------------------------------------------------------------------------------------------------- gates
def gate_colour_scale(init: float = GATE_AT_INIT) -> list[list]:
    """A diverging colour scale over σ(λ) in [0, 1], white at the gates' initial value `init`: blue heads moved
    towards content, red ones towards position, and a gate that stayed at init stays white."""
    return [[0.0, "#2166ac"], [init, "#f7f7f7"], [1.0, "#b2182b"]]


def gate_colour_bar(init: float = GATE_AT_INIT, **extra) -> dict:
    """The σ(λ) colour bar with the initial value marked."""
    return {"title": {"text": "σ(λ)", "side": "right"}, "tickvals": [0, 0.5, init, 1],
            "ticktext": ["0", "0.5", f"{init:.3f} = σ(1), init", "1"], **extra}


def gates_heatmap(gates: np.ndarray, blocks: list[int], title: str) -> go.Figure:
    """σ(λ) per GPSA block (rows) and head (columns), 0 = content only, 1 = positional only, against the initial
    value σ(1) (white; see gate_colour_scale)."""
    fig = go.Figure(go.Heatmap(
        z=gates, x=[f"head {h}" for h in range(gates.shape[1])], y=[f"block {b}" for b in blocks], zmin=0, zmax=1,
        colorscale=gate_colour_scale(), texttemplate="%{z:.3f}", customdata=gates - GATE_AT_INIT,
        hovertemplate="%{y}, %{x}<br>σ(λ) = %{z:.3f} (init %{customdata:+.3f})<extra></extra>",
        colorbar=gate_colour_bar()))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=120 + 45 * len(blocks), margin={"t": 50, "b": 30})
    return fig


def gates_over_training(history: dict) -> go.Figure:
    """σ(λ) per block and head at every evaluation point of a run, with a slider over the points, above the mean
    gate of each block against the step."""
    entries = history["entries"]
    curves = TrainingCurves.of(history)
    gates = curves.gates  # (T, blocks, H)
    num_blocks, num_heads = gates.shape[1:]
    blocks = [f"block {b}" for b in range(num_blocks)]
    heads = [f"head {h}" for h in range(num_heads)]
    fig = make_subplots(rows=2, cols=1, row_heights=[0.55, 0.45], vertical_spacing=0.16,
                        subplot_titles=("σ(λ) per block and head at the chosen step", "mean σ(λ) per block"))
    fig.add_trace(go.Heatmap(z=gates[-1], x=heads, y=blocks, zmin=0, zmax=1, colorscale=gate_colour_scale(),
                             texttemplate="%{z:.3f}", colorbar=gate_colour_bar(len=0.5, y=0.78)), row=1, col=1)
    for b in range(num_blocks):
        fig.add_trace(go.Scatter(x=curves.steps, y=gates[:, b].mean(-1), mode="lines+markers", name=blocks[b]),
                      row=2, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_yaxes(title="mean σ(λ)", row=2, col=1)
    fig.update_xaxes(title="step", row=2, col=1)
    # in steps, as the curve under it and every other view of training (issue 30: the slider was in epochs)
    slider_steps = [{"method": "restyle", "label": f"{step:,}", "args": [{"z": [gates[i]]}, [0]]}
                    for i, step in enumerate(curves.steps.tolist())]
    fig.update_layout(height=640, margin={"t": 60}, legend={"y": 0.22, "yanchor": "middle"}, sliders=[{
        "active": len(entries) - 1, "steps": slider_steps, "currentvalue": {"prefix": "step "}, "pad": {"t": 30}}])
    return fig


# --------------------------------------------------------------------------------------------------- nonlocality
def nonlocality_over_training(histories: dict[str, dict]) -> go.Figure:
    """ConViT Fig. 5: nonlocality (patches, mean over heads and the probe images) per block against the training
    step (as every view of training counts it), one panel per model with a shared y axis."""
    fig = make_subplots(rows=1, cols=len(histories), shared_yaxes=True, subplot_titles=list(histories))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#393b79", "#637939"]
    for col, history in enumerate(histories.values(), start=1):
        curves = TrainingCurves.of(history)
        steps, values = curves.steps, curves.nonlocality
        for block in range(values.shape[1]):
            fig.add_trace(go.Scatter(x=steps, y=values[:, block], mode="lines+markers", name=f"block {block}",
                                     legendgroup=str(block), showlegend=col == 1,
                                     line={"color": palette[block % len(palette)]}), row=1, col=col)
        fig.update_xaxes(title="step", row=1, col=col)
    fig.update_yaxes(title="nonlocality (patches)", row=1, col=1)
    fig.update_layout(height=420, margin={"t": 50})
    return fig


def image_nonlocality_figure(trained: list[np.ndarray], initial: list[np.ndarray] | None, title: str,
                             uniform: float, labels: tuple[str, str] = ("at init", "trained")) -> go.Figure:
    """Per block (numbered from 0, as everywhere): each head's nonlocality on this image (dots) and the block mean
    (line), trained vs at init (`labels` names the two, initial first; `initial` None: only the first). The y axis
    runs from 0 to past `uniform`, the nonlocality of uniform attention on the grid (drawn dashed): a fixed range for
    the grid, so that views of one grid compare, and a near-uniform model's small changes do not fill the axis."""
    fig = go.Figure()
    series = [(labels[0], initial, "#999999"), (labels[1], trained, "#d62728")] if initial is not None else \
        [(labels[0], trained, "#d62728")]
    for label, values, colour in series:
        xs = [block + (h - (len(v) - 1) / 2) * 0.04 for block, v in enumerate(values) for h in range(len(v))]
        ys = [float(x) for v in values for x in v]
        heads = [h for v in values for h in range(len(v))]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=f"{label}: heads", marker={"color": colour},
                                 customdata=heads, hovertemplate="head %{customdata}: %{y:.2f}<extra></extra>"))
        fig.add_trace(go.Scatter(x=list(range(len(values))), y=[float(np.mean(v)) for v in values],
                                 mode="lines", name=f"{label}: mean", line={"color": colour, "width": 3}))
    fig.add_hline(y=uniform, line={"dash": "dash", "color": "#555555", "width": 1},
                  annotation_text=f"uniform attention: {uniform:.2f}", annotation_position="top left")
    top = max([uniform * 1.25] + [1.05 * float(np.max(v)) for _, values, _ in series for v in values])
    fig.update_xaxes(title="block", dtick=1)
    fig.update_yaxes(title="nonlocality (patches)", range=[0, top])
    fig.update_layout(title=title, height=420, margin={"t": 50})
    return fig


CENTRES_COLUMNS = 4
"""Blocks per row of `centres_figure`: a model with many GPSA blocks (ConViT-S has 10) gets rows of readable,
square panels instead of one row of slivers."""


def centres_figure(centres: list[tuple[np.ndarray, np.ndarray]], gates: np.ndarray, blocks: list[int],
                   grid: tuple[int, int], initial: list[np.ndarray], initial_label: str = "at init") -> go.Figure:
    """Positional centres Δ_h = (dx, dy) of each GPSA head on the patch grid, one square panel per block (rows of
    `CENTRES_COLUMNS`), every panel on the same range, fitted to the centres (a patch or more beyond the farthest);
    the marker grows with the strength α_h (a sharper kernel), its colour is the head's σ(λ) against its initial
    value. Under them, each head's centre in `initial` (per block: (H, 2), the model at init or the run's first
    snapshot, named by `initial_label`) as a hollow gray ring, joined to where the head ended."""
    cols = min(len(blocks), CENTRES_COLUMNS)
    rows = -(-len(blocks) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"block {b}" for b in blocks],
                        horizontal_spacing=0.06, vertical_spacing=0.3 / rows)
    farthest = max(float(np.nanmax(np.abs(np.concatenate([c for c, _ in centres] + list(initial))))), 1.0)
    span = min(float(np.ceil(farthest)) + 1.0, max(grid) / 2)  # (never past the grid)
    step = max(1, int(np.ceil(2 * span / 8)))  # at most about 8 ticks an axis
    for index, ((centre, strength), gate, start) in enumerate(zip(centres, gates, initial, strict=True)):
        row, col, axis = index // cols + 1, index % cols + 1, f"x{index + 1 if index else ''}"
        heads = list(range(len(centre)))
        # the path of each head: init -> trained, gaps (None) between heads
        path_x = [v for h in heads for v in (start[h, 0], centre[h, 0], None)]
        path_y = [v for h in heads for v in (start[h, 1], centre[h, 1], None)]
        fig.add_trace(go.Scatter(x=path_x, y=path_y, mode="lines", line={"color": "#aaaaaa", "width": 1},
                                 hoverinfo="skip", showlegend=False), row=row, col=col)
        fig.add_trace(go.Scatter(
            x=start[:, 0], y=start[:, 1], mode="markers", name=f"centre {initial_label}", legendgroup="initial",
            showlegend=index == 0, customdata=heads,
            hovertemplate=f"h%{{customdata}} {initial_label}: Δ = (%{{x:.2f}}, %{{y:.2f}})<extra></extra>",
            marker={"symbol": "circle-open", "size": 14, "color": "#888888", "line": {"width": 2}}), row=row, col=col)
        fig.add_trace(go.Scatter(
            x=centre[:, 0], y=centre[:, 1], mode="markers+text", text=[f"h{h}" for h in heads], name="centre now",
            legendgroup="trained", showlegend=index == 0, textfont={"size": 10},
            textposition="top center", customdata=np.stack([strength, gate], axis=1),
            hovertemplate="Δ = (%{x:.2f}, %{y:.2f})<br>α = %{customdata[0]:.2f}<br>σ(λ) = %{customdata[1]:.2f}"
                          "<extra></extra>",
            marker={"size": np.clip(6 + 6 * np.nan_to_num(strength), 6, 30), "color": gate, "cmin": 0, "cmax": 1,
                    "colorscale": gate_colour_scale(), "line": {"color": "black", "width": 1},
                    "colorbar": gate_colour_bar() if index == 0 else None, "showscale": index == 0}),
            row=row, col=col)
        fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", marker={"symbol": "x", "color": "black", "size": 10},
                                 hovertemplate="the query patch<extra></extra>", showlegend=False), row=row, col=col)
        fig.update_xaxes(range=[-span, span], dtick=step, row=row, col=col,
                         title="dx (patches)" if row == rows else None)
        fig.update_yaxes(range=[span, -span], dtick=step, scaleanchor=axis, scaleratio=1, row=row, col=col,
                         title="dy (patches, down)" if col == 1 else None)
    fig.update_layout(height=120 + 300 * rows, margin={"t": 50},
                      legend={"orientation": "h", "y": -0.25 / rows, "yanchor": "top"})
    return fig


# --------------------------------------------------------------------------------------------------- convpass
BYPASS_RATIO_AXIS = "‖s·bypass‖ / ‖frozen branch‖ (ratio),<br>mean over patches"
"""What `bypass_ratio_figure` plots: a ratio of norms, which can exceed 1 (the bypass writes more than the frozen
branch beside it), not a share of the update."""


def bypass_ratio_figure(means: dict[str, dict[str, float]]) -> go.Figure:
    """Per Convpass block and branch: the mean over the image's patches of ‖s·bypass‖ / ‖frozen branch‖
    (`Analysis.summary()["bypass_mean_per_block"]`), with a line at 1 (bypass as large as the frozen branch)."""
    fig = go.Figure()
    blocks = sorted(means, key=int)
    for branch in ("attn", "mlp"):
        key = f"{branch}_ratio"
        if key in means[blocks[0]]:
            fig.add_trace(go.Bar(x=[f"block {b}" for b in blocks], y=[means[b][key] for b in blocks],
                                 name=f"{branch} bypass"))
    fig.add_hline(y=1, line={"color": "gray", "dash": "dot"}, annotation_text="as large as the frozen branch",
                  annotation_position="top left")
    fig.update_layout(title="‖s·bypass‖ relative to the frozen branch beside it, per block", barmode="group",
                      yaxis_title=BYPASS_RATIO_AXIS, height=380, margin={"t": 50})
    return fig


# --------------------------------------------------------------------------------------------------- findings
def sample_efficiency_figure(rows: list[dict], data: str) -> go.Figure:
    """Test accuracy against the fraction of training data: ours (on `data`, dots = seeds) and the paper's."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"this project: {data}, same steps",
                                                        "ConViT paper, Table 2: ImageNet"))
    colours = {"deit": "#1f77b4", "convit": "#d62728"}
    for method, label in (("deit", "DeiT"), ("convit", "ConViT")):
        measured = [r for r in rows if r[method]["mean"] is not None]
        fig.add_trace(go.Scatter(
            x=[r["fraction"] for r in measured], y=[r[method]["mean"] for r in measured], mode="lines+markers",
            name=f"{label} (ours)", line={"color": colours[method]},
            error_y={"type": "data", "array": [r[method]["sd"] or 0 for r in measured]},
            customdata=[len(r[method]["runs"]) for r in measured],
            hovertemplate="%{x:.0%}: %{y:.1f}% (%{customdata} seeds)<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=list(PAPER_SAMPLE_EFFICIENCY), y=[v[0 if method == "deit" else 1] for v in
                                                PAPER_SAMPLE_EFFICIENCY.values()],
            mode="lines+markers", name=f"{label}-S (paper)", line={"color": colours[method], "dash": "dash"}),
            row=1, col=2)
    for col, fractions in ((1, [r["fraction"] for r in rows]), (2, list(PAPER_SAMPLE_EFFICIENCY))):
        fig.update_xaxes(type="log", tickvals=fractions, ticktext=[f"{f:.0%}" for f in fractions],
                         title="fraction of the training set", row=1, col=col)
    fig.update_yaxes(title="top-1 test accuracy (%)", row=1, col=1)
    fig.update_layout(height=420, margin={"t": 50})
    return fig


def petl_figure(summary: dict, target: str) -> go.Figure:
    """Last-epoch accuracy per method: against shots per class (left, when few-shot runs were made) and on the whole
    training split (right, with trainable parameters). `target`: what the methods were adapted to."""
    few_shot = bool(summary["shots"])
    whole = f"{summary['full_images']:,} training images of {target}"
    fig = make_subplots(rows=1, cols=2 if few_shot else 1, column_widths=[0.6, 0.4] if few_shot else None,
                        subplot_titles=(f"few-shot: images of {target} per class", whole) if few_shot else (whole,))
    shots = summary["shots"]
    palette = ["#636efa", "#00cc96", "#ef553b", "#ab63fa", "#ffa15a", "#19d3f3"]
    for i, method in enumerate(summary["methods"]):
        colour = palette[i % len(palette)]  # the same colour for a method in both panels
        cells = summary["accuracy"][method]
        measured = [s for s in shots if cells[str(s)]["mean"] is not None]
        if few_shot:
            fig.add_trace(go.Scatter(
                x=measured, y=[cells[str(s)]["mean"] for s in measured], mode="lines+markers", name=method,
                legendgroup=method, line={"color": colour},
                error_y={"type": "data", "array": [cells[str(s)]["sd"] or 0 for s in measured]},
                hovertemplate=f"{method}, %{{x}} shots: %{{y:.1f}}%<extra></extra>"), row=1, col=1)
        full = cells["full"]
        if full["mean"] is not None:
            fig.add_trace(go.Bar(
                x=[f"{method}<br>{summary['parameters'][method]:,} params"], y=[full["mean"]], name=method,
                legendgroup=method, showlegend=not few_shot, marker={"color": colour},
                error_y={"type": "data", "array": [full["sd"] or 0]},
                hovertemplate=f"{method}: %{{y:.1f}}%<extra></extra>"), row=1, col=2 if few_shot else 1)
    if few_shot:
        fig.update_xaxes(type="log", tickvals=shots, ticktext=[str(s) for s in shots], title="shots", row=1, col=1)
    fig.update_yaxes(title="last-epoch test accuracy (%)", row=1, col=1)
    fig.update_layout(height=440, margin={"t": 50})
    return fig


# --------------------------------------------------------------------------------------------------- export
def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


PLOTLY_BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "plotly" / "plotly-cartesian-4.1.1.min.js.gz"
"""plotly.js's cartesian bundle (every trace type of this app's figures), gzipped: 0.5 MB where the full plotly.js
is 4.8 MB (see assets/plotly/README.md)."""

_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<!-- a plotly figure; plotly.js (cartesian bundle, MIT licence) is inlined gzipped and unpacked by the browser,
     so this file opens offline -->
</head><body style="margin:0">
<div id="figure" style="width:100vw;height:100vh"></div>
<script type="application/json" id="figure-json">{figure}</script>
<script type="text/plain" id="plotly-js">{bundle}</script>
<script>
(async () => {{
  const packed = Uint8Array.from(atob(document.getElementById("plotly-js").textContent), c => c.charCodeAt(0));
  const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"));
  (0, eval)(await new Response(stream).text());  // defines window.Plotly
  const figure = JSON.parse(document.getElementById("figure-json").textContent);
  await Plotly.newPlot("figure", figure.data, figure.layout, {{responsive: true}});
}})().catch(e => {{ document.body.textContent = "This browser cannot unpack the plot: " + e; }});
</script>
</body></html>
"""


@functools.cache
def _plotly_bundle() -> str:
    """PLOTLY_BUNDLE as base64 text (read once)."""
    return base64.b64encode(PLOTLY_BUNDLE.read_bytes()).decode("ascii")


def write_html(fig: go.Figure, path: Path) -> None:
    """`fig` as one HTML file that opens offline, under 1 MB for the app's figures: plotly.js's cartesian bundle
    inlined gzipped (plotly's own write_html would inline the full 4.8 MB library)."""
    title = fig.layout.title.text or path.stem
    figure = fig.to_json().replace("</", "<\\/")  # no "</script>" inside the script element; "\/" is JSON for "/"
    path.write_text(_HTML.format(title=html.escape(title), figure=figure, bundle=_plotly_bundle()),
                    encoding="utf-8")


def export_view(stem: str, figures: dict[str, Figure | go.Figure], numbers: dict,
                arrays: dict | None = None) -> list[str]:
    """Write a view to files: PNG per matplotlib figure, one offline HTML per plotly figure (`write_html`), its
    numbers as JSON and its arrays as NPZ. Returns the paths, in a fresh folder of the swept scratch root."""
    folder = scratch.folder(stem)
    paths = []
    for name, fig in figures.items():
        if isinstance(fig, go.Figure):
            path = folder / f"{stem}_{name}.html"
            write_html(fig, path)
        else:
            path = folder / f"{stem}_{name}.png"
            fig.savefig(path, format="png", dpi=120)
        paths.append(str(path))
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(numbers, indent=1, default=_jsonable))
    paths.append(str(path))
    if arrays:
        path = folder / f"{stem}.npz"
        np.savez_compressed(path, **{k: np.asarray(v) for k, v in arrays.items()})
        paths.append(str(path))
    return paths
