"""Honest scales (issue 13): every map has a labelled colour bar; attention maps share one fixed range; gates are
drawn against their initial value; initial GPSA centres sit under the trained ones; blocks are numbered from 0
everywhere; the Convpass ratio is named as a ratio; the compare labels are readable; exports are small and open
offline. Each against the shipped models on shipped example images."""
from __future__ import annotations

import base64
import gzip
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from app import plots
from app.service import Service
from app.tabs import attention, compare, convpass, equation, gates, gpsa, nonlocality, replay
from petl_core import figures, metrics, zoo
from petl_core.diagnostics import TrainingCurves
from petl_core.query import Query

ROOT = Path(__file__).resolve().parents[1]
SCENE = str(ROOT / "assets" / "examples" / "scene_dress.png")
DIGIT_SCENE = str(ROOT / "assets" / "examples" / "digit_scene_0.png")
CONVIT, DEIT, CONVPASS = "convit_scenes_gpsa50", "deit_scenes", "convpass_digit_scenes"
OFFSETS_3X3 = {(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
"""ConViT's convolutional initialisation: 9 heads centred on the 3×3 offsets around the query."""


@pytest.fixture(scope="module")
def service() -> Service:
    return Service("cpu")


def _colour_bars(fig: Figure) -> list:
    """The colour bars of a matplotlib figure (each colour bar's axes knows its colour bar)."""
    return [ax._colorbar for ax in fig.axes if hasattr(ax, "_colorbar")]


def _label(bar) -> str:
    """A colour bar's label, whichever way the bar lies."""
    return bar.ax.get_xlabel() if bar.orientation == "horizontal" else bar.ax.get_ylabel()


def _initial_gate(name: str) -> float:
    """σ(λ) of the GPSA heads of `name`'s architecture at initialisation, read from the model (all equal)."""
    model = zoo.initial_model(zoo.load(name).card)
    gates = torch.cat([torch.sigmoid(b.attn.gating_param.detach()) for b in model.blocks
                       if hasattr(b.attn, "gating_param")])
    assert torch.allclose(gates, gates[0])
    return float(gates[0])


@pytest.mark.parametrize("log_scale", [True, False])
def test_grid_and_enlarged_map_share_one_fixed_range_stated_on_their_colour_bars(service, log_scale):
    result = service.result_for(SCENE, DEIT)
    _, grid, enlarged = attention._draw(result, "center", 0, 0, log_scale)
    (bar,) = _colour_bars(grid)
    (heatmap,) = enlarged.data  # (the map alone: no picture under it)
    low, high = figures.ATTENTION_LOG_RANGE if log_scale else figures.ATTENTION_LINEAR_RANGE
    assert (bar.norm.vmin, bar.norm.vmax) == (low, high)
    shown = (np.log10(low), np.log10(high)) if log_scale else (low, high)
    assert (heatmap.zmin, heatmap.zmax) == pytest.approx(shown)
    label = f"attention weight ({'log' if log_scale else 'linear'} scale, fixed {low:g} to {high:g})"
    assert _label(bar) == label and heatmap.colorbar.title.text == label
    # DeiT's block 0 is near-uniform: on the fixed scale its map spans a sliver of the colour bar, where a range
    # fitted to the map would stretch it over the whole bar
    span = (np.max(heatmap.z) - np.min(heatmap.z)) / (heatmap.zmax - heatmap.zmin)
    assert span < 0.1, span


def test_the_equation_maps_use_the_attention_views_fixed_range(service):
    """The equation's content, positional and mixed maps are attention weights: drawn on the attention views' fixed
    log range (not one fitted to the head's maps, which made the same weight look different from tab to tab)."""
    fig, _, _ = equation.EquationView(service).render(SCENE, CONVIT, "center", 1, 2)
    (bar,) = _colour_bars(fig)
    assert (bar.norm.vmin, bar.norm.vmax) == figures.ATTENTION_LOG_RANGE
    assert _label(bar) == figures.attention_colour_label(True)
    maps = [ax for ax in fig.axes if ax.images and ax is not bar.ax and ax.get_title() != "model input"]
    assert len(maps) == 3 and all(ax.images[-1].norm is bar.norm for ax in maps)


def test_the_hover_codes_are_the_query_maps_on_the_fixed_log_range(service):
    """What the page draws on hover (one byte per weight) decodes to the maps the server's views draw, within half a
    code (1/170 of a decade) above the range's floor; the colours of the codes are the grid's colours."""
    result = service.result_for(SCENE, CONVIT)
    trace = result.trace
    codes = figures.attention_codes(trace)
    low, high = np.log10(figures.ATTENTION_LOG_RANGE)
    rows, cols = trace.grid
    for block in range(len(trace.attention)):
        for patch in [(0, 0), (rows // 2, cols // 3), (rows - 1, cols - 1)]:
            maps = figures.query_maps(trace, block, Query.at(*patch)).numpy()  # (H, rows, cols)
            decoded = 10 ** (low + codes[block, :, patch[0] * cols + patch[1]].astype(float) / 255 * (high - low))
            weights = maps.reshape(maps.shape[0], -1)
            shown = weights > figures.ATTENTION_LOG_RANGE[0]
            np.testing.assert_allclose(np.log10(decoded[shown]), np.log10(weights[shown]),
                                       atol=0.5 / 255 * (high - low) + 1e-6)
            assert (codes[block, :, patch[0] * cols + patch[1]][~shown] == 0).all()
    for log_scale in (True, False):
        lut = figures.attention_lut(log_scale)
        weights = 10 ** np.linspace(low, high, 256)
        expected = figures.colormaps["inferno"](figures.attention_norm(log_scale)(weights))[:, :3] * 255
        assert np.abs(lut - expected).max() <= 0.5 and lut.dtype == np.uint8


def test_every_map_has_a_labelled_colour_bar(service):
    convit = service.result_for(SCENE, CONVIT)
    decomposition, _, _ = gpsa.GpsaView(service).render(SCENE, CONVIT, None, "center", 0, True)
    compared, _ = compare.CompareView(service).render(SCENE, [DEIT, CONVIT], 0, "center", True)
    label = figures.attention_colour_label(True)
    for fig in (attention._draw(convit, "center", 0, 0, True)[1], decomposition, compared):
        assert [_label(b) for b in _colour_bars(fig)] == [label]
    maps, _, channels, _ = convpass.ConvpassView(service).render(DIGIT_SCENE, CONVPASS, None, 0, "attn")
    panels = [ax.get_title() for ax in maps.axes if not hasattr(ax, "_colorbar") and ax.get_title() != "model input"]
    # (each bar's label is its map's title, wrapped to the bar's length)
    assert [" ".join(_label(b).split()) for b in _colour_bars(maps)] == panels and len(panels) == 3
    assert [_label(b) for b in _colour_bars(channels)] == ["3×3 conv output"]


def test_a_maps_colour_is_its_value_alone_never_tinted_by_the_picture(service):
    """Issue 30: the same attention drawn beside a black and a white picture is the same colours, which are the
    colour bar's (the picture has a column of its own), in every figure that draws maps."""
    result = service.result_for(SCENE, CONVIT)
    trace, query = result.trace, Query.at(3, 4)
    black, white = np.zeros_like(result.input_image), np.ones_like(result.input_image)

    def mosaic(fig: Figure) -> np.ndarray:
        return np.asarray(fig.axes[0].images[0].get_array())

    for draw in (lambda image: figures.attention_grid_figure(trace, image, query),
                 lambda image: figures.attention_layer_figure(trace, 0, image, query)):
        on_black, on_white = mosaic(draw(black)), mosaic(draw(white))
        width = on_black.shape[1] // (max(a.shape[1] for a in trace.attention) + 1)  # (a panel and its gap)
        np.testing.assert_array_equal(on_black[:, width:], on_white[:, width:])  # every map
        assert not np.array_equal(on_black[:, :width], on_white[:, :width])  # the picture's column
    # a map's cell is the colour bar's colour of its weight, exactly
    cell = figures.panel_background(black, trace.grid)[1]
    weight = float(figures.query_maps(trace, 0, query)[0, 0, 0])
    expected = figures.colormaps["inferno"](figures.attention_norm(True)(weight))[:3]
    grid = mosaic(figures.attention_grid_figure(trace, black, query))
    np.testing.assert_allclose(grid[cell // 2, width + cell // 2], expected, atol=1e-6)
    # the matplotlib figures with axes per map draw no picture under a map
    for fig in (figures.compare_figure([("a", trace, white, (4, 4))], 0, query),
                figures.marked_maps_figure({"A": trace.attention[0][0, 0, 0].reshape(trace.grid)}, white, (4, 4), query,
                                           "attention", "t")):
        for ax in fig.axes:
            if ax.get_title() != "model input" and ax.images:
                assert len(ax.images) == 1 and ax.images[0].get_alpha() is None, ax.get_title()


@pytest.mark.parametrize("model", [CONVIT, DEIT, CONVPASS])
def test_every_label_of_a_figure_laid_out_by_hand_lies_inside_it(service, model):
    """The mosaic figures (the grid of the page, the CLI's per-block and bypass figures) and the gates' heatmap are
    laid out by hand: every title, row and column label, colour bar tick and colour bar label is drawn inside the
    figure, for one-row blocks too (a colour bar's label once ran off a one-row block figure), and the title
    overlaps no label."""
    result = service.result_for(DIGIT_SCENE if model == CONVPASS else SCENE, model)
    trace, image, query = result.trace, result.input_image, Query.at(3, 4)
    drawn = [figures.attention_layer_figure(trace, block, image, query) for block in range(len(trace.attention))]
    drawn.append(figures.attention_grid_figure(trace, image, query))
    maps = {i: metrics.bypass_maps(entry, trace.grid, trace.num_prefix[i]) for i, entry in enumerate(trace.bypass)
            if entry}
    if maps:
        drawn += [figures.bypass_figure(maps, image), figures.conv_channels_figure(maps[0]["attn"].conv[0], "conv"),
                  convpass._draw(result, 0, "attn")[0]]  # (the page's maps, figures.maps_row_figure)
    if trace.gated_blocks:
        drawn += [figures.gates_figure(trace.gate_matrix, trace.gated_blocks),
                  figures.gates_figure(trace.gate_matrix[:1], trace.gated_blocks[:1])]
    for fig in drawn:
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        inside = fig.bbox.padded(1)
        texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
        assert len(texts) > 5
        boxes = [text.get_window_extent(renderer) for text in texts]
        for text, box in zip(texts, boxes, strict=True):
            assert inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1), text.get_text()
        title = max(texts, key=lambda t: t.get_fontsize())  # the title overlaps no label
        assert not any(box.overlaps(boxes[texts.index(title)]) for text, box in zip(texts, boxes, strict=True)
                       if text is not title), title.get_text()


def test_gates_are_coloured_against_their_initial_value(service):
    init = _initial_gate(CONVIT)
    assert metrics.GATE_AT_INIT == pytest.approx(init, abs=1e-7)
    blocks, trained = service.checkpoint_gates(CONVIT)
    heatmap = plots.gates_heatmap(trained, blocks, "t").data[0]
    assert (heatmap.zmin, heatmap.zmax) == (0, 1)
    (white,) = [position for position, colour in heatmap.colorscale if colour == "#f7f7f7"]
    assert white == pytest.approx(init, abs=1e-7)
    marked = [text for value, text in zip(heatmap.colorbar.tickvals, heatmap.colorbar.ticktext, strict=True)
              if value == pytest.approx(init)]
    assert marked == [f"{init:.3f} = σ(1), init"]
    # the trained heads lie on both sides of init: two hues, no longer one red block
    assert trained.min() < init < trained.max()
    history = gates.GatesView(service).render(CONVIT)[0]
    assert history.data[0].colorscale == heatmap.colorscale
    norm = figures.gates_figure(torch.from_numpy(trained), blocks).axes[0].images[0].norm  # the CLI's figure
    assert (norm.vmin, norm.vcenter, norm.vmax) == (0.0, pytest.approx(init), 1.0)


def test_initial_centres_are_drawn_under_the_trained_ones(service):
    _, centres, numbers = gpsa.GpsaView(service).render(SCENE, CONVIT, None, "center", 0, True)
    model = zoo.initial_model(zoo.load(CONVIT).card)
    initial = [t for t in centres.data if t.name == "centre at init"]
    trained = [t for t in centres.data if t.name == "centre now"]
    assert len(initial) == len(trained) == len(numbers["blocks"])
    for block, ring, now in zip(numbers["blocks"], initial, trained, strict=True):
        expected, _ = metrics.positional_centres(model.blocks[block].attn.pos_proj.weight)
        np.testing.assert_allclose(np.stack([ring.x, ring.y], axis=1), expected.numpy(), atol=1e-6)
        assert {(round(x), round(y)) for x, y in zip(ring.x, ring.y, strict=True)} == OFFSETS_3X3
        assert list(centres.data).index(ring) < list(centres.data).index(now)  # drawn first: underneath
        assert not np.allclose(ring.x, now.x)  # training moved them
    # the replay's reference is the run's first snapshot, named by its step
    steps = service.snapshot_steps(CONVIT)
    _, _, _, replayed, _, _ = replay.ReplayView(service).replay(SCENE, CONVIT, steps[-1], "center")
    rings = [t for t in replayed.data if t.name == f"centre at step {steps[0]}"]
    assert len(rings) == len(numbers["blocks"])
    for ring in rings:
        np.testing.assert_allclose(sorted(zip(ring.x, ring.y, strict=True)), sorted(OFFSETS_3X3), atol=1e-3)


def test_blocks_are_numbered_from_zero_in_every_view(service):
    view = nonlocality.NonlocalityView(service)
    curves, note = view.render_training(CONVIT)
    num_blocks = TrainingCurves.of(service.history(CONVIT)).nonlocality.shape[1]
    names = [f"block {b}" for b in range(num_blocks)]
    assert [t.name for t in curves.data if t.showlegend is not False] == names
    assert f"blocks 0-{num_blocks - 1}:" in note and "layer" not in note.lower()
    result = service.result_for(SCENE, CONVIT)
    grid = attention._draw(result, "center", 0, 0, True)[1]
    assert [t.get_text() for t in grid.axes[0].texts if t.get_ha() == "right"] == names  # the grid's row labels
    image = plots.image_nonlocality_figure([v[0].numpy() for v in result.analysis.nonlocality],
                                           [v[0].numpy() for v in result.analysis.init_nonlocality], "t",
                                           metrics.uniform_nonlocality(result.trace.grid))
    means = [t for t in image.data if t.mode == "lines"]
    assert image.layout.xaxis.title.text == "block" and all(list(t.x) == list(range(num_blocks)) for t in means)


def test_the_convpass_ratio_is_named_for_what_it_is(service):
    _, ratios, _, _ = convpass.ConvpassView(service).render(DIGIT_SCENE, CONVPASS, None, 0, "attn")
    trace = service.result_for(DIGIT_SCENE, CONVPASS).trace
    axis, title = ratios.layout.yaxis.title.text, ratios.layout.title.text
    assert "‖s·bypass‖ / ‖frozen branch‖" in axis and "ratio" in axis and "share" not in (axis + title).lower()
    for bars in ratios.data:
        branch = bars.name.split()[0]
        expected = [metrics.bypass_maps(trace.bypass[b], trace.grid, trace.num_prefix[b])[branch].ratio[0].mean()
                    for b, entry in enumerate(trace.bypass) if entry]
        np.testing.assert_allclose(bars.y, expected, rtol=1e-5)
    assert max(max(b.y) for b in ratios.data) > 1  # not a share: the bypass can write more than the frozen branch


def test_compare_row_labels_are_horizontal_and_readable(service):
    models = compare.DEFAULT_MODELS
    fig, _ = compare.CompareView(service).render(SCENE, models, 0, "cls", True)
    FigureCanvasAgg(fig).draw()
    columns = len(fig.axes[0].get_gridspec().get_grid_positions(fig)[2])
    labels = [fig.axes[row * columns].yaxis.label for row in range(len(models))]
    assert [label.get_text() for label in labels] == models
    width_px = fig.get_figwidth() * fig.dpi
    assert all(label.get_rotation() == 0 for label in labels)
    (bar,) = _colour_bars(fig)
    for label in [*labels, bar.ax.yaxis.label]:
        # shrunk to a 1,000-pixel page, the text is still at least 11 px high (the colour bar's: 8.8 px at 0.8×)
        assert label.get_fontsize() / 72 * fig.dpi * 1000 / width_px >= (11 if label in labels else 8.8)
        box = label.get_window_extent()
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width_px  # not cut off


def _html_parts(path: str) -> tuple[dict, str]:
    """The figure and the unpacked plotly.js of an exported HTML file."""
    html = Path(path).read_text()
    figure = json.loads(re.search(r'<script type="application/json" id="figure-json">(.*?)</script>', html,
                                  re.S).group(1))
    packed = re.search(r'<script type="text/plain" id="plotly-js">(.*?)</script>', html, re.S).group(1)
    return figure, gzip.decompress(base64.b64decode(packed)).decode()


def test_exports_are_small_and_carry_what_draws_them_offline(service, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    exported = [
        *attention.AttentionView(service).export(SCENE, DEIT, None, "center", 0, 0, True),
        *gpsa.GpsaView(service).export(SCENE, CONVIT, None, "center", 0, True),
        *gates.GatesView(service).export(CONVIT),
        *nonlocality.NonlocalityView(service).export(SCENE, CONVIT, None),
        *convpass.ConvpassView(service).export(DIGIT_SCENE, CONVPASS, None, 0, "attn"),
        *compare.CompareView(service).export(SCENE, compare.DEFAULT_MODELS, 0, "cls", True),
    ]
    sizes = {Path(p).name: Path(p).stat().st_size for p in exported}
    assert max(sizes.values()) <= 1_000_000, sizes
    pages = [p for p in exported if p.endswith(".html")]
    assert len(pages) == 7
    for page in pages:
        assert "<script src=" not in Path(page).read_text()  # nothing fetched
        figure, library = _html_parts(page)
        assert "window.Plotly = Plotly" in library
        for kind in {t["type"] for t in figure["data"]}:  # the bundle draws every trace type of the figure
            assert f'moduleType:"trace",name:"{kind}"' in library, (page, kind)
    _, _, enlarged = attention._draw(service.result_for(SCENE, DEIT), "center", 0, 0, True)
    (page,) = [p for p in pages if p.endswith("attention_enlarged.html")]
    assert _html_parts(page)[0] == json.loads(enlarged.to_json())


def test_nonlocality_on_one_grid_is_drawn_on_one_range_against_uniform_attention(service):
    """Issue 30: the Training tab drew DeiT's nonlocality autoscaled to 6.231-6.238 beside ConViT's 2-6, so noise
    looked like a trend, and its legend said "step 0" twice at the first snapshot. Both models of a grid now share one
    range, from 0 to past the nonlocality of uniform attention (drawn, and equal to petl_core's nonlocality of a
    uniform map), and the first snapshot is one series."""
    view = replay.ReplayView(service)
    steps = service.snapshot_steps("deit_scenes")
    figures_of = {name: view.replay(SCENE, name, steps[-1])[4] for name in ("convit_scenes", "deit_scenes")}
    grid = service.result_for(SCENE, "deit_scenes").trace.grid
    uniform = torch.full((1, 1, grid[0] * grid[1], grid[0] * grid[1]), 1 / (grid[0] * grid[1]))
    assert metrics.uniform_nonlocality(grid) == pytest.approx(float(metrics.nonlocality(uniform, grid)), rel=1e-6)
    ranges = {name: tuple(fig.layout.yaxis.range) for name, fig in figures_of.items()}
    assert ranges["convit_scenes"] == ranges["deit_scenes"] and ranges["deit_scenes"][0] == 0
    assert ranges["deit_scenes"][1] >= 1.25 * metrics.uniform_nonlocality(grid)
    for fig in figures_of.values():
        assert [shape.y0 for shape in fig.layout.shapes] == [pytest.approx(metrics.uniform_nonlocality(grid))]
    first = view.replay(SCENE, "deit_scenes", steps[0])[4]
    names = [t.name for t in first.data]
    assert len(names) == len(set(names)) == 2 and all(n.startswith(f"step {steps[0]}") for n in names)


def test_the_convpass_note_reads_its_parameter_counts_from_the_shipped_cards():
    """Issue 30: the note hard-coded 37,930 of 1.5 M trainable parameters (one model's), beside a guide model of
    22,522 of 413,266: each shipped Convpass model's count now comes from its card, and the paper's 0.5% is said to be
    its ViT-B's."""
    text = convpass.learn_text()
    shipped = [name for name, family in zoo.SHIPPED.items() if family == "convpass"]
    assert shipped
    for name in shipped:
        parameters = zoo.ModelCard.load(zoo.ASSETS / name).parameters
        trainable, total = parameters["trainable"], parameters["total"]
        assert f"`{name}` {trainable:,} of {total:,} parameters ({trainable / total:.1%})" in text
    assert "0.5%\" is for its ViT-B" in text
