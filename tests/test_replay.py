"""/replay (the "Through training" tab) through gradio_client against `python app.py` (tests/conftest.py): snapshot 0
is the model at initialisation, the last snapshot is the shipped model, and bad steps and models are refused with
the valid choices named."""
from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from petl_core import zoo

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

SCENE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "scene_dress.png"
# Snapshots are stored in fp16: each weight is the shipped fp32 weight rounded to 11 significant bits, a relative
# change of at most 2^-11 ≈ 4.9e-4. Through the 6 blocks of a scenes model that moves the nonlocality (a few
# patches) and the probabilities by a few 1e-4 (measured: ≤ 2.4e-4 relative and ≤ 3.3e-4 absolute), so 2e-3 (four
# times the rounding of a single weight) separates fp16 rounding from a different model or a different step.
FP16_TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def client(app_server, tmp_path_factory) -> Client:
    return Client(app_server, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def _plotly(output: dict) -> dict:
    assert output["type"] == "plotly"
    return json.loads(output["plot"])


def _array(values: list | dict) -> np.ndarray:
    """A plotly JSON array: a list, or (numpy data) {"dtype", "bdata": base64 bytes}."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values, dtype=float)


def test_replay_is_named_with_image_model_step(client):
    endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/replay"]
    assert [p["parameter_name"] for p in endpoint["parameters"]][:3] == ["image", "model", "step"]


def test_snapshot_0_is_the_initial_convit(client):
    top5, grid, gates_plot, centres, nonlocality, numbers = client.predict(
        handle_file(SCENE), "convit_scenes", 0, api_name="/replay")
    assert numbers["step"] == 0 and numbers["steps"] == zoo.snapshot_steps("convit_scenes")
    # ConViT initialises every gating parameter λ at 1 (stored exactly in fp16): σ(λ) = sigmoid(1) in every head
    gates = np.asarray(numbers["gates"])
    assert gates.shape == (4, 9)
    np.testing.assert_allclose(gates, 1 / (1 + math.exp(-1)), atol=1e-6)
    assert grid["type"] == "matplotlib" and "step 0" in json.dumps(_plotly(gates_plot))
    # per GPSA block: init-to-now paths, centres at step 0, centres now, the query marker; at step 0 they coincide
    traces = _plotly(centres)["data"]
    assert len(traces) == 16
    at_start = [t for t in traces if t.get("name") == "centre at step 0"]
    now = [t for t in traces if t.get("name") == "centre now"]
    assert len(at_start) == len(now) == 4
    for ring, head in zip(at_start, now, strict=True):
        np.testing.assert_allclose([_array(ring["x"]), _array(ring["y"])], [_array(head["x"]), _array(head["y"])])
    assert len(numbers["nonlocality"]) == 6 and all(len(v) == 9 for v in numbers["nonlocality"])
    assert len(top5["confidences"]) == 5


@pytest.mark.parametrize("name", ["convit_scenes", "deit_scenes"])
def test_last_snapshot_is_the_shipped_model(client, name):
    steps = zoo.snapshot_steps(name)
    *_, numbers = client.predict(handle_file(SCENE), name, steps[-1], api_name="/replay")
    _, _, summary, *_ = client.predict(handle_file(SCENE), name, None, "center", api_name="/analyze")
    assert numbers["step"] == steps[-1] and numbers["steps"] == steps
    assert [d["label"] for d in numbers["top5"]] == [d["label"] for d in summary["top5"]]
    np.testing.assert_allclose([d["probability"] for d in numbers["top5"]],
                               [d["probability"] for d in summary["top5"]], atol=FP16_TOLERANCE)
    np.testing.assert_allclose(numbers["nonlocality"], summary["nonlocality"]["per_head"], rtol=FP16_TOLERANCE)
    if name.startswith("deit"):
        assert numbers["gates"] == []
    else:
        np.testing.assert_allclose(numbers["gates"], summary["gates"]["sigma_lambda"], rtol=FP16_TOLERANCE)


@pytest.mark.parametrize("step", [150, -1, 10**30, 1.5, "1000x", "", None, [0], True, "nan"])
def test_a_step_that_is_no_snapshot_is_refused_with_the_steps(client, step):
    steps = re.escape(str(zoo.snapshot_steps("convit_scenes")))
    with pytest.raises(AppError, match=rf"snapshot step .* does not exist here; choose one of {steps}"):
        client.predict(handle_file(SCENE), "convit_scenes", step, api_name="/replay")


@pytest.mark.parametrize(("model", "message"), [
    ("convit_fmnist", "convit_fmnist has no training snapshots; these models have them: convit_scenes_gpsa50"),
    ("convit_tiny.fb_in1k", "convit_tiny.fb_in1k has no training snapshots"),
    ("../assets", "not in the list of choices|not a model of this app"),
])
def test_a_model_without_snapshots_is_refused(client, model, message):
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(SCENE), model, 0, api_name="/replay")


def test_no_image_is_refused(client):
    with pytest.raises(AppError, match="Upload an image"):
        client.predict(None, "convit_scenes", 0, api_name="/replay")


@pytest.mark.browser
@pytest.mark.slow
def test_the_tab_plays_through_every_snapshot_in_a_browser(app_server, tmp_path, monkeypatch):
    """Play from the last snapshot: the views restart at step 0 and show each following snapshot in turn (a tick
    waits for the step on screen to be drawn, so none is skipped); Pause stops."""
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    from scripts.browser_page import CHROMIUM_ARGS, FILE_INPUT, VIEWPORT, open_tab

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pair = zoo.shipped_pair(zoo.DEFAULT_MODEL)
    steps = zoo.snapshot_steps(pair["convit"])
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path="/usr/bin/chromium",
                                                       headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT)
        context.set_default_timeout(60_000)
        expect = sync_api.expect
        try:
            page = context.new_page()
            page.goto(app_server)
            page.wait_for_selector(FILE_INPUT, state="attached")
            page.set_input_files(FILE_INPUT, str(SCENE))
            open_tab(page, "Training")
            note = page.locator("#replay-note")
            expect(note).to_contain_text(f"{pair['convit']} at step {steps[-1]}:", timeout=60_000)
            expect(note).to_contain_text(f"{pair['deit']} at step {steps[-1]}:", timeout=60_000)
            page.locator("#replay-play").click()
            for step in steps[:3]:
                expect(note).to_contain_text(f"{pair['convit']} at step {step}:", timeout=60_000)
            page.locator("#replay-pause").click()
            shown = page.locator("#replay-step input")
            page.wait_for_timeout(4_000)  # a tick already queued may still land
            paused = shown.input_value()
            page.wait_for_timeout(4_000)
            assert shown.input_value() == paused and int(paused) in steps
        finally:
            context.close()
