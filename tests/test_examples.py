"""What a newcomer meets: examples that fit each model, a line on what it sees, light backgrounds inverted for the
grayscale models, and the model the page opens with. Library checks here, then the API of `python app.py`
(tests/conftest.py) through gradio_client, each against petl_core computed directly in this process."""
from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image, ImageDraw, ImageOps

from app.service import Service
from app.uploads import EXAMPLES
from petl_core import zoo
from petl_core.data import DatasetMissingError
from petl_core.diagnostics import predict
from petl_core.dial import PROBE_BATCH, probe_set
from petl_core.examples import CORRECT, MANIFEST, WRONG, pick, task_examples
from petl_core.images import load_image
from petl_core.inputs import describe_input, light_background, light_on_dark, model_input
from petl_core.models import HubUnavailableError
from scripts.app_server import call, upload

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

TASKS = sorted(p.parent.name for p in EXAMPLES.glob(f"*/{MANIFEST}"))


def _drawing(tmp_path: Path, ink: int = 0, paper: int = 255) -> Path:
    """A T-shirt drawn with PIL, `ink` on `paper` (dark on light by default), as a newcomer's upload."""
    image = Image.new("L", (280, 280), paper)
    ImageDraw.Draw(image).polygon([(70, 60), (120, 50), (160, 50), (210, 60), (250, 110), (215, 135), (195, 115),
                                   (195, 240), (85, 240), (85, 115), (65, 135), (30, 110)], fill=ink)
    path = tmp_path / f"t-shirt_{ink}_on_{paper}.png"
    image.save(path)
    return path


def _top1(name: str, picture: Image.Image) -> str:
    loaded = zoo.load(name)
    with torch.no_grad():
        return loaded.card.classes[int(loaded.model(loaded.preprocess(picture)[None]).argmax())]


# ------------------------------------------------------------------------------------------------- the library
def test_light_backgrounds_are_found_and_no_shipped_test_image_has_one(tmp_path):
    assert light_background(Image.open(_drawing(tmp_path)))
    assert not light_background(Image.open(_drawing(tmp_path, ink=255, paper=0)))
    assert TASKS == ["digits", "digits_scenes", "fashion_mnist", "fashion_scenes"]
    for path in EXAMPLES.glob("*/*.png"):  # what the models were trained on is light on dark
        assert not light_background(load_image(path)), path


def test_only_the_grayscale_models_trained_here_invert(tmp_path):
    dark_on_light = load_image(_drawing(tmp_path))
    for name in zoo.SHIPPED:
        loaded = zoo.load(name)
        assert light_on_dark(loaded.card)
        inputs, inverted = model_input(loaded, dark_on_light)
        assert inverted and torch.equal(inputs, loaded.preprocess(ImageOps.invert(dark_on_light)))
        inputs, inverted = model_input(loaded, dark_on_light, invert=False)
        assert not inverted and torch.equal(inputs, loaded.preprocess(dark_on_light))
    loaded = zoo.load("convit_fmnist")
    hub_like = replace(loaded.card, source="hub", preprocessing={"input_size": (3, 224, 224), "mean": (0.5,) * 3,
                                                                 "std": (0.5,) * 3, "crop_pct": 0.875})
    assert not light_on_dark(hub_like)
    assert not model_input(replace(loaded, card=hub_like), dark_on_light)[1]


def test_the_line_on_what_a_model_sees_reads_its_card():
    for name in ("convit_fmnist", "convit_scenes_gpsa50", "convpass_digits"):
        card = json.loads((zoo.ASSETS / name / "card.json").read_text())
        kwargs, pre = card["architecture"]["kwargs"], card["preprocessing"]
        size, patch = kwargs["img_size"], kwargs["patch_size"]
        line = describe_input(zoo.load(name))
        assert f"{size}×{size} grayscale image" in line, line
        assert f"{size // patch}×{size // patch} patches of {patch}×{patch} pixels" in line
        assert f"brought to {pre['base_size']}×{pre['base_size']}" in line
        assert ("padded by" in line) == (pre["pad"] > 0) and "light on dark" in line
        assert f"one of {len(card['classes'])} classes: {', '.join(card['classes'])}." in line


@cache
def _probe(data: str):
    return probe_set(data)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if "scenes" in n else n  # (generated)
                                  for n in zoo.SHIPPED])
def test_each_models_examples_are_its_first_right_and_wrong_test_images(name):
    """The app's pick (the shipped files through the upload path) is the pick over the probe set itself."""
    loaded = zoo.load(name)
    data = loaded.card.recipe["data"]
    try:
        probe = _probe(data)
    except DatasetMissingError as e:
        pytest.skip(str(e))
    pre = loaded.card.preprocessing
    predictions = predict(loaded.model, probe, (pre["mean"], pre["std"]), torch.device("cpu"), PROBE_BATCH,
                          pre["base_size"], pre["pad"])
    labels = probe.labels.tolist()
    expected = pick(labels, predictions.tolist())
    examples = task_examples(loaded, EXAMPLES)
    assert [e.path.name for e in examples] == [f"test_{i:04d}.png" for i in expected]
    assert [e.label for e in examples] == [probe.classes[labels[i]] for i in expected]
    assert [e.prediction for e in examples] == [probe.classes[int(predictions[i])] for i in expected]
    assert [e.correct for e in examples] == [True] * CORRECT + [False] * WRONG
    assert all(e.path.parent.name == data for e in examples)
    assert sum(p.stat().st_size for p in (EXAMPLES / data).glob("*.png")) < 20_000  # tiny


def test_the_page_opens_with_the_hub_convit_only_when_it_loads(monkeypatch):
    service = Service("cpu")
    entries = service.model_entries()
    offline = [e for e in entries if e.source == "shipped" or not e.available]
    monkeypatch.setattr(service, "model_entries", lambda refresh=False: offline)
    assert all(not e.available for e in offline if e.source == "hub")
    assert service.default_model() == zoo.DEFAULT_MODEL
    online = [replace(e, available=True, reason="") if e.source == "hub" else e for e in entries]
    monkeypatch.setattr(service, "model_entries", lambda refresh=False: online)
    loads = []
    monkeypatch.setattr(service, "get_model", lambda name, file=None: loads.append(name))
    assert service.default_model() == "convit_tiny.fb_in1k" == loads[-1]

    def unavailable(name, file=None):
        raise HubUnavailableError("the download was cut short")

    monkeypatch.setattr(service, "get_model", unavailable)
    assert service.default_model() == zoo.DEFAULT_MODEL


# ------------------------------------------------------------------------------------------------- the API
@pytest.fixture(scope="module")
def client(app_server, tmp_path_factory) -> Client:
    return Client(app_server, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def _label(caption: str) -> str:
    """The true label a gallery caption starts with ('Dress ✓', 'Shirt ✗ Pullover')."""
    return caption.split(" ✓")[0].split(" ✗ ")[0]


def test_a_newcomers_first_example_gets_a_right_answer(client):
    default = [m["name"] for m in client.predict(api_name="/models") if m["default"]]
    assert default == [zoo.DEFAULT_MODEL]  # the server runs offline (HF_HUB_OFFLINE=1)
    gallery, line = client.predict(default[0], api_name="/examples")
    first = gallery["value"][0]
    _, top5, summary, *_ = client.predict(handle_file(first["image"]), default[0], None, "center",
                                          api_name="/analyze")
    assert top5["label"] == _label(first["caption"]) and first["caption"].endswith(" ✓")
    assert summary["inverted"] is False
    assert top5["label"] == _top1(default[0], load_image(first["image"]))


def test_the_gallery_follows_the_model(client):
    fashion, fashion_line = client.predict("convit_fmnist", api_name="/examples")
    digits, digits_line = client.predict("convpass_digits", api_name="/examples")
    photos, hub_line = client.predict("convit_tiny.fb_in1k", api_name="/examples")
    expected = task_examples(zoo.load("convit_fmnist"), EXAMPLES)
    assert [Path(item["image"]).name for item in fashion["value"]] == [e.path.name for e in expected]
    assert [_label(item["caption"]) for item in fashion["value"]] == [e.label for e in expected]
    wrong = [e for e in expected if not e.correct]
    assert [item["caption"] for item in fashion["value"][-len(wrong):]] == \
        [f"{e.label} ✗ {e.prediction}" for e in wrong]
    assert {_label(item["caption"]) for item in digits["value"]} <= set("0123456789")
    assert "fashion_mnist" in fashion["label"] and "digits" in digits["label"]
    assert sorted(Path(item["image"]).name for item in photos["value"]) == \
        sorted(p.name for p in EXAMPLES.glob("*") if p.suffix in (".png", ".jpg") and "scene" not in p.name)
    assert fashion_line.strip("*") == describe_input(zoo.load("convit_fmnist"))
    assert digits_line.strip("*") == describe_input(zoo.load("convpass_digits"))
    assert "cannot be reached" in hub_line or "switched off" in hub_line  # offline: says why, no error


def test_a_drawing_on_white_is_inverted_unless_switched_off(client, app_server, tmp_path):
    drawing = _drawing(tmp_path)
    picture = load_image(drawing)
    _, top5, summary, *_ = client.predict(handle_file(drawing), "convit_fmnist", None, "center",
                                          api_name="/analyze")  # the toggle left out: on, as before it existed
    assert summary["inverted"] is True and top5["label"] == _top1("convit_fmnist", ImageOps.invert(picture))
    assert top5["label"] == "T-shirt/top"
    _, top5, summary, *_ = client.predict(handle_file(drawing), "convit_fmnist", None, "center", False,
                                          api_name="/analyze")
    assert summary["inverted"] is False and top5["label"] == _top1("convit_fmnist", picture)
    # over the raw REST API too, a call written before the toggle existed (four inputs) gets it on
    with httpx.Client(timeout=120) as http:
        _, _, summary, *_ = call(http, app_server, "analyze", [upload(http, app_server, drawing), "convit_fmnist", None,
                                                                "center"])
    assert summary["inverted"] is True


def test_every_view_shows_the_analysis_the_toggle_chose(client, tmp_path):
    """Switched off, the views show the drawing as it is (not the inverted analysis /analyze would have cached):
    the dial's "as trained" top-5 and the replay's last snapshot agree with /analyze for each setting."""
    drawing = _drawing(tmp_path)
    picture = load_image(drawing)
    for invert, seen in ((True, ImageOps.invert(picture)), (False, picture)):
        _, top5, summary, *_ = client.predict(handle_file(drawing), "convit_fmnist", None, "center", invert,
                                              api_name="/analyze")
        *_, dialled = client.predict(image=handle_file(drawing), model="convit_fmnist", gates="", query="center",
                                     invert=invert, api_name="/dial")
        assert dialled["trained_top5"][0]["label"] == top5["label"] == _top1("convit_fmnist", seen)
        scenes = "convit_scenes_gpsa50"  # (a model with training snapshots)
        _, top5, *_ = client.predict(handle_file(drawing), scenes, None, "center", invert, api_name="/analyze")
        *_, last = client.predict(image=handle_file(drawing), model=scenes, step=zoo.snapshot_steps(scenes)[-1],
                                  invert=invert, api_name="/replay")
        assert last["top5"][0]["label"] == top5["label"] == _top1(scenes, seen)


def test_hostile_parameters_get_a_clear_message(client, tmp_path):
    with pytest.raises(AppError, match="not in the list of choices|is not a model of this app"):
        client.predict("../../etc/passwd", api_name="/examples")
    with pytest.raises(AppError, match="Choose a model first"):
        client.predict(None, api_name="/examples")
    with pytest.raises(AppError, match="invert must be true or false"):
        client.predict(handle_file(_drawing(tmp_path)), "convit_fmnist", None, "center", "yes", api_name="/analyze")
