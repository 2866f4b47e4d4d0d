"""The app's pieces that need no server: the clickable input picture, exports, queries and the findings tables."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from gradio.route_utils import delete_files_created_by_app
from matplotlib.figure import Figure

from app import plots, scratch, service
from petl_core import findings
from petl_core.query import CLS, Query

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("size", "grid"), [((32, 32), (8, 8)), ((224, 224), (14, 14)), ((48, 64), (3, 4))])
def test_a_click_on_a_patch_of_the_picture_selects_that_patch(size, grid):
    image = np.random.default_rng(0).random((*size, 3))
    picture = plots.picker_image(image, grid, Query.at(1, 2))
    scale = picture.shape[0] // size[0]
    assert picture.shape == (size[0] * scale, size[1] * scale, 3) and picture.dtype == np.uint8
    cell_h, cell_w = picture.shape[0] / grid[0], picture.shape[1] / grid[1]
    for row in range(grid[0]):
        for col in range(grid[1]):
            for fy, fx in ((0.05, 0.05), (0.5, 0.5), (0.95, 0.95)):
                x, y = int((col + fx) * cell_w), int((row + fy) * cell_h)
                assert plots.patch_at(x, y, picture.shape, grid) == (row, col)
    framed = picture[int(1.5 * cell_h), int(2 * cell_w) + 1]  # the query patch's left edge is drawn in cyan
    assert tuple(framed) == (0, 255, 255)


def test_queries_parse_and_are_checked_against_the_grid():
    assert service.parse_query("cls", (8, 8)) == CLS
    assert service.parse_query(" 3, 4 ", (8, 8)) == Query.at(3, 4)
    assert service.parse_query("(7,0)", (8, 8)) == Query.at(7, 0)
    with pytest.raises(gr.Error, match="outside the 8×8"):
        service.parse_query("8,0", (8, 8))
    assert service.parse_query("center", (14, 14)) == Query.at(7, 7)
    assert service.parse_query("centre", (3, 4)) == Query.at(1, 2)
    with pytest.raises(gr.Error, match="not 'cls', 'center' or 'row,col'"):
        service.parse_query("middle", (8, 8))


def test_export_writes_each_figure_and_the_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    values = np.arange(6.0).reshape(2, 3)
    paths = plots.export_view("view", {"static": fig, "interactive": plots.gates_heatmap(values / 6, [0, 1], "t")},
                              {"values": values}, {"values": values})
    assert all(Path(p).parent.parent == tmp_path / "inductive-bias-explorer" for p in paths)  # the swept folder
    names = sorted(p.rsplit("/", 1)[-1] for p in paths)
    assert names == ["view.json", "view.npz", "view_interactive.html", "view_static.png"]
    by_name = {p.rsplit("/", 1)[-1]: p for p in paths}
    assert json.loads(open(by_name["view.json"]).read())["values"] == values.tolist()
    np.testing.assert_array_equal(np.load(by_name["view.npz"])["values"], values)
    html = open(by_name["view_interactive.html"]).read()
    # plotly.js is inside (gzipped), not fetched from a CDN: the file works offline, in under 1 MB
    assert "Plotly.newPlot" in html and Path(by_name["view_interactive.html"]).stat().st_size <= 1_000_000
    assert "<script src=" not in html


def test_findings_group_runs_by_method_and_put_the_papers_numbers_beside():
    results = {"runs": [
        {"method": "convit", "fraction": 0.05, "seed": 0, "test_accuracy": 0.80},
        {"method": "convit", "fraction": 0.05, "seed": 1, "test_accuracy": 0.78},
        {"method": "deit", "fraction": 0.05, "seed": 0, "test_accuracy": 0.75},
        {"method": "deit", "fraction": 0.3, "seed": 0, "test_accuracy": 0.85},
    ]}
    rows = findings.sample_efficiency_summary(results)
    assert [r["fraction"] for r in rows] == [0.05, 0.3]
    assert rows[0]["convit"]["mean"] == pytest.approx(79.0) and rows[0]["convit"]["sd"] == pytest.approx(2 ** 0.5)
    assert rows[0]["relative_gap"] == pytest.approx(100 * (79 - 75) / 75)
    assert rows[0]["paper"] == {"deit": 34.8, "convit": 47.8, "relative_gap": pytest.approx(100 * 13 / 34.8)}
    assert rows[1]["convit"]["mean"] is None and rows[1]["relative_gap"] is None
    petl = findings.petl_summary({"runs": [
        {"method": "linear", "shots": None, "seed": 0, "trainable_parameters": 10, "last_epoch_accuracy": 0.5,
         "train_images": 800, "val_images": 200},
        {"method": "convpass", "shots": 2, "seed": 0, "trainable_parameters": 99, "last_epoch_accuracy": 0.6,
         "train_images": 20},
    ]})
    assert petl["methods"] == ["linear", "convpass"] and petl["shots"] == [2]
    assert petl["full_images"] == 1000  # the whole split: a method's validation images are part of it
    assert petl["accuracy"]["linear"]["full"]["mean"] == pytest.approx(50.0)
    assert petl["accuracy"]["linear"]["2"]["mean"] is None


def test_a_sketch_is_inverted_once_by_the_analysis_for_the_light_on_dark_models(tmp_path):
    from PIL import Image, ImageDraw

    from app.ui import _use_sketch
    from petl_core import zoo
    from petl_core.inputs import model_input
    layer = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # the sketchpad's transparent canvas with black strokes
    ImageDraw.Draw(layer).line([(20, 5), (20, 35)], fill=(0, 0, 0, 255), width=5)
    path = tmp_path / "sketch.png"
    layer.save(path)
    made = Image.open(_use_sketch({"composite": str(path)}))
    pixels = np.asarray(made)
    assert pixels.shape == (40, 40) and pixels[20, 20] == 0 and pixels[20, 5] == 255  # as drawn: black on white
    _, inverted = model_input(zoo.load("convit_fmnist"), made.convert("RGB"))
    assert inverted  # the analysis makes it white ink on black, like the training data
    _, inverted = model_input(zoo.load("convit_fmnist"), made.convert("RGB"), invert=False)
    assert not inverted
    with pytest.raises(gr.Error, match="Draw something first"):
        _use_sketch({"composite": None})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_app_asked_for_cuda_without_one_says_so_and_exits():
    result = subprocess.run([sys.executable, "app.py", "--device", "cuda", "--preload"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "app.py: device 'cuda' was asked for but no CUDA device is available" in result.stderr


def test_app_flags_fall_back_to_the_environment(monkeypatch):
    import importlib.util  # app.py shares its name with the app/ package: load it by path
    spec = importlib.util.spec_from_file_location("app_main", ROOT / "app.py")
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    monkeypatch.setenv("EXPLORER_PORT", "9123")
    monkeypatch.setenv("EXPLORER_PRELOAD", "deit_fmnist convit_fmnist")
    monkeypatch.setenv("EXPLORER_CONCURRENCY", "3")
    monkeypatch.delenv("EXPLORER_DEVICE", raising=False)
    args = main.parse_args([])
    assert (args.port, args.preload, args.concurrency, args.device) == (9123, ["deit_fmnist", "convit_fmnist"], 3,
                                                                         "auto")
    flags = main.parse_args(["--port", "8000", "--preload"])  # flags win over the environment
    assert flags.port == 8000 and flags.preload == []


def test_sweep_deletes_old_scratch_files_and_empty_cache_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    old, fresh = scratch.folder("export"), scratch.folder("export")
    (old / "a.png").write_bytes(b"x" * 1000)
    (fresh / "b.png").write_bytes(b"y")
    emptied, kept = tmp_path / "gradio" / "0a1b", tmp_path / "gradio" / "2c3d"
    emptied.mkdir(parents=True)
    kept.mkdir()
    (kept / "upload.png").write_bytes(b"z")  # Gradio's own deletion handles files; the folders stay behind
    for path in (old, emptied, kept):
        os.utime(path, (time.time() - 120, time.time() - 120))
    assert scratch.sweep(60) == 2
    assert not old.exists() and not emptied.exists() and fresh.exists() and (kept / "upload.png").exists()


class _SetARequestGrows(set):
    """A file set to which a request adds a file while the first walk over it is under way."""

    def __iter__(self):
        files = super().__iter__()
        first = next(files)
        if not getattr(self, "grown", False):
            self.grown = True
            self.add(first + ".new")
        yield first
        yield from files


def test_sweep_survives_the_race_that_stops_gradios_own_file_deletion(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))

    def cache(name: str) -> Path:
        path = tmp_path / "gradio" / name / "attention.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
        return path

    blocks = gr.Blocks()
    blocks.temp_file_sets.append(_SetARequestGrows({str(cache("0a1b"))}))
    with pytest.raises(RuntimeError, match="changed size during iteration"):  # what ends Gradio's schedule
        delete_files_created_by_app(blocks, 0)
    blocks.temp_file_sets[-1] = _SetARequestGrows({str(cache("0a1b"))})
    scratch.sweep(0, blocks)  # meets the same race and carries on
    later = cache("2c3d")
    blocks.temp_file_sets[-1].add(str(later))
    scratch.sweep(0, blocks)
    assert not later.exists()


@pytest.mark.parametrize("num_blocks", [4, 10])
def test_positional_centres_stay_readable_with_many_gpsa_blocks(num_blocks):
    """Issue 30 item 2: at ConViT-S scale (10 GPSA blocks, a 14×14 grid) the centres were ten slivers in one row with
    an axis of every patch from −7 to 7. Now: rows of at most four square panels, one range for all, fitted to the
    centres, at most about 8 ticks an axis, and taller rows for more blocks."""
    rng = np.random.default_rng(0)
    offsets = np.array([(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dtype=float)  # ConViT's init
    initial = [offsets.copy() for _ in range(num_blocks)]
    centres = [(offsets + rng.normal(0, 0.5, offsets.shape), rng.random(9)) for _ in range(num_blocks)]
    fig = plots.centres_figure(centres, rng.random((num_blocks, 9)), list(range(num_blocks)), (14, 14), initial)
    suffixes = ["", *map(str, range(2, num_blocks + 1))]
    xaxes, yaxes = [fig.layout[f"xaxis{s}"] for s in suffixes], [fig.layout[f"yaxis{s}"] for s in suffixes]
    assert len(xaxes) == len(yaxes) == num_blocks
    columns = {tuple(axis.domain) for axis in xaxes}
    assert len(columns) == min(num_blocks, plots.CENTRES_COLUMNS)
    assert min(d[1] - d[0] for d in columns) > 0.2  # a quarter of the page at least, less the gaps
    farthest = max(np.abs(np.concatenate([c for c, _ in centres] + initial)).max(), 1)
    for x, y in zip(xaxes, yaxes, strict=True):
        assert tuple(x.range) == (-x.range[1], x.range[1]) and tuple(y.range) == (x.range[1], -x.range[1])
        assert farthest < x.range[1] <= 7 and x.range[1] <= farthest + 2  # fitted, never past the grid
        assert 2 * x.range[1] / x.dtick <= 9 and y.dtick == x.dtick
        assert y.scaleanchor == x.plotly_name.replace("axis", "") and y.scaleratio == 1  # square panels
    rows = -(-num_blocks // plots.CENTRES_COLUMNS)
    assert fig.layout.height >= 300 * rows


def test_every_font_face_the_page_declares_has_every_letter():
    """Issue 30 item 18: Gradio's semibold faces of IBM Plex hold no capital letter, so the title's "B" and GPSA's
    "A" came from another font. Every face the app's theme declares is served with the app and covers the Latin
    letters, digits and the Greek the views write."""
    import re

    from fontTools.ttLib import TTFont

    from app.ui import THEME

    static = Path(gr.__file__).parent / "templates" / "frontend"
    latin = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    faces = [(url, latin + ("σλΔα·×−" if fonts is THEME._font else ""))  # (IBM Plex Mono has no Greek)
             for fonts in (THEME._font, THEME._font_mono) for font in fonts if isinstance(font, gr.themes.LocalFont)
             for url in re.findall(r"url\('([^']+)'\)", font.stylesheet()["css"])]
    assert len(faces) == 4
    for url, wanted in faces:
        glyphs = TTFont(static / url).getBestCmap()
        assert not [c for c in wanted if ord(c) not in glyphs], url


def test_a_message_in_place_of_a_plot_is_wrapped_to_fit():
    """Issue 30 item 18: the Convpass tab's "no bypasses" message was one line cut off both sides of its plot."""
    text = ("convit_scenes_gpsa50 has no Convpass bypasses: choose convpass_digit_scenes or convpass_digits (or a "
            "Convpass checkpoint)")
    fig = plots.message_figure(text)
    (note,) = fig.layout.annotations
    lines = note.text.split("<br>")
    assert len(lines) > 1 and all(len(line) <= plots.MESSAGE_WIDTH for line in lines)
    assert " ".join(lines) == text and fig.layout.height >= 40 + 22 * len(lines)
