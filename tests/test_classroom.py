"""A class on one server (issue 29): what is the same for everyone is computed once and shared (app.answers), and a
repeat is answered when it is asked, without waiting in the queue; over raw HTTP against `python app.py`."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import matplotlib.pyplot as plt
import plotly.graph_objects as go
import pytest
from gradio.caching import CacheMissError, ProbeCache
from gradio.components.plot import PlotData

from app.answers import SharedAnswers, by_image_and_inputs, by_inputs, shares
from scripts.app_server import endpoint_ids, upload

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "assets" / "examples" / "scene_dress.png"
MODEL = "convit_scenes_gpsa50"


def _ask(client: httpx.Client, url: str, fn_index: int, data: list) -> dict:
    """One call the page's way in a session of its own: every message of its stream, by kind, and its output."""
    session = uuid.uuid4().hex[:11]
    client.post(f"{url}gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                     "event_data": None, "trigger_id": None}).raise_for_status()
    kinds = []
    with client.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                kinds.append(message.get("msg"))
                if message.get("msg") == "process_completed":
                    assert message["success"], message
                    return {"kinds": kinds, "output": message["output"]["data"],
                            "used_cache": message.get("used_cache")}
    raise AssertionError(f"no result: {kinds}")


@pytest.mark.parametrize("endpoint", ["atlas", "analyze", "nonlocality_history", "compare", "attention_data",
                                      "compare_data"])
def test_the_same_question_is_computed_once_and_answered_at_once(app_server, endpoint, tmp_path):
    """Two students ask the same: the first call is computed in the queue, the second is answered when it is joined
    (no 'process_starts'), with the same answer."""
    with httpx.Client(timeout=300) as client:
        ids = endpoint_ids(client, app_server)
        copy = tmp_path / "scene_copy.png"  # the other student's upload: the same bytes, another file
        copy.write_bytes(SCENE.read_bytes())
        images = [upload(client, app_server, path) for path in (SCENE, copy)]
        inputs = {"atlas": lambda i: [MODEL], "analyze": lambda i: [images[i], MODEL, None, "cls"],
                  "nonlocality_history": lambda i: ["convit_scenes"],
                  "compare": lambda i: [images[i], [MODEL, "deit_scenes"], 3, "2,5", True],
                  "attention_data": lambda i: [images[i], MODEL, None],
                  "compare_data": lambda i: [images[i], [MODEL, "deit_scenes"]]}[endpoint]
        first = _ask(client, app_server, ids[endpoint], inputs(0))
        second = _ask(client, app_server, ids[endpoint], inputs(1))
    assert second["used_cache"] == "full" and "process_starts" not in second["kinds"], second["kinds"]
    strip = [o for o in first["output"] if not (isinstance(o, dict) and "path" in o)]  # (files are copied per call)
    assert strip == [o for o in second["output"] if not (isinstance(o, dict) and "path" in o)]


class _View:
    def __init__(self) -> None:
        self.calls = 0

    @shares(by_inputs)
    def history(self, model: str) -> tuple:
        self.calls += 1
        figure, axes = plt.subplots()
        axes.plot([0, 1], [1, 0])
        return figure, go.Figure(go.Scatter(y=[1, 2, 3])), {"model": model}


def test_answers_are_kept_as_sent_within_their_bytes():
    answers = SharedAnswers(max_bytes=10**6)
    view = _View()
    assert isinstance(view.history("a")[0], plt.Figure)  # called from Python, a view is unchanged
    plt.close("all")
    view.calls = 0
    history = answers.answering(view.history)
    first = history("a")
    assert isinstance(first[0], PlotData) and isinstance(first[1], PlotData) and first[2] == {"model": "a"}
    assert not plt.get_fignums()  # the matplotlib figure was encoded once and closed
    assert history("a") is first and view.calls == 1 and answers.hits == 1
    with ProbeCache(), pytest.raises(CacheMissError):  # Gradio's probe at join time: not known yet
        history("b")
    assert view.calls == 1
    history("b")
    assert view.calls == 2 and 0 < answers.bytes <= answers.max_bytes
    one = answers.bytes // 2
    small = SharedAnswers(max_bytes=8 * one + one // 2)  # room for 8 answers: the ninth pushes out the oldest
    history = small.answering(view.history)
    for i in range(9):
        history(f"m{i}")
    history("m8"), history("m0")
    assert view.calls == 2 + 9 + 1 and small.hits == 1 and small.bytes <= small.max_bytes


def test_a_view_of_an_image_is_keyed_by_its_content(tmp_path):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    a.write_bytes(SCENE.read_bytes())
    b.write_bytes(SCENE.read_bytes())
    c.write_bytes(SCENE.read_bytes() + b"\0")
    assert by_image_and_inputs(str(a), MODEL, "3,4") == by_image_and_inputs(str(b), MODEL, "3,4")
    assert by_image_and_inputs(str(a), MODEL, "3,4") != by_image_and_inputs(str(c), MODEL, "3,4")
    assert by_image_and_inputs(str(a), MODEL, "3,4") != by_image_and_inputs(str(a), MODEL, "3,5")
    assert by_image_and_inputs(str(tmp_path / "gone.png"), MODEL) is None


@pytest.mark.slow
def test_the_guided_paths_first_answers_are_computed_before_anyone_asks(tmp_path):
    """A fresh server has computed, by the time it says it is ready, what every student of a class asks first for
    each model and example the guided path opens: the first call of each is answered when it is joined, and the
    dial's presets are scored (app.warm_up)."""
    from app.guide import STEPS
    from app.links import example_path
    from scripts.app_server import start_app, stop_app

    process, url = start_app(tmp_path, 300, forced={"EXPLORER_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"})
    try:
        assert "the guided path's first answers" in (tmp_path / "server.log").read_text()
        opened = dict.fromkeys((step.view.model, step.view.example) for step in STEPS)
        with httpx.Client(timeout=300) as client:
            ids = endpoint_ids(client, url)
            for model, example in opened:
                asked = [("atlas", [model]), ("nonlocality_history", [model]), ("gates_history", [model])]
                if example:
                    image = upload(client, url, Path(example_path(example)))
                    asked.append(("attention_data", [image, model, None]))
                for endpoint, data in asked:
                    first = _ask(client, url, ids[endpoint], data)
                    assert first["used_cache"] == "full" and "process_starts" not in first["kinds"], (endpoint, model)
            # each model's examples are worked out: a guide step that changes the model shows them at once (cold,
            # the Convpass step's took 4-8 s: issue 30 item 16)
            for model in dict.fromkeys(model for model, _ in opened):
                started = time.perf_counter()
                gallery, line = _ask(client, url, ids["examples"], [model])["output"]
                assert time.perf_counter() - started < 2.0 and f"{model} sees" in line, model
            # the presets of the guide's ConViT: the dial answers their probe accuracy in its first answer
            model, example = next((s.view.model, s.view.example) for s in STEPS if s.view.tab == "dial")
            image = upload(client, url, Path(example_path(example)))
            summary = _ask(client, url, ids["analyze"], [image, model, None, "center"])["output"][2]
            blocks, heads = len(summary["gates"]["blocks"]), len(summary["nonlocality"]["per_head"][0])
            for sigma in (0.0, 1.0):  # (a setting not scored yet is answered twice: without, then with, its score)
                answer = _ask(client, url, ids["dial"], [image, model, json.dumps([[sigma] * heads] * blocks),
                                                         "center"])
                assert answer["kinds"].count("process_generating") == 1, (sigma, answer["kinds"])
                assert answer["output"][-1]["probe_accuracy"] is not None, sigma
    finally:
        stop_app(process)
