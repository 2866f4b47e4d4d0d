"""The inductive-bias dial: petl_core.dial's per-call gates, and the app's /dial endpoint over real HTTP."""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from petl_core import create_model, trace, zoo
from petl_core.analysis import analyze
from petl_core.dial import DialProbe, gate_override, parse_gates, probe_accuracy, probe_set, set_gates
from petl_core.images import load_image

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCENE = sorted((ROOT / "assets" / "examples").glob("scene_*.png"))[0]
MODEL = "convit_scenes_gpsa50"


def _convit() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("convit_tiny", img_size=32, patch_size=4, in_chans=1, num_heads=4, embed_dim=16, depth=3,
                        local_up_to_layer=2, num_classes=5).eval()


def test_a_dial_sets_the_mix_for_one_call_and_leaves_the_model_alone():
    model, x = _convit(), torch.randn(2, 1, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained = trace(model, x)
    with set_gates(model, [[0.0] * 4, [1.0, 0.0, 0.5, 0.25]]) as applied:
        dialled = trace(model, x)
    assert torch.equal(applied[0], torch.zeros(4)) and applied[1].tolist() == [1.0, 0.0, 0.5, 0.25]
    # σ = 0: content attention only; σ = 1: positional only; the trace reports the gates as set
    torch.testing.assert_close(dialled.attention[0], dialled.content[0])
    torch.testing.assert_close(dialled.attention[1][:, 0], dialled.positional[1][:, 0].expand(2, -1, -1))
    torch.testing.assert_close(dialled.attention[1][:, 1], dialled.content[1][:, 1])
    assert dialled.gates[1].tolist() == [1.0, 0.0, 0.5, 0.25]
    assert not torch.allclose(dialled.logits, trained.logits)
    # afterwards (and in the fused path) the model is as trained, parameters untouched
    again = trace(model, x)
    torch.testing.assert_close(again.logits, trained.logits)
    torch.testing.assert_close(model(x), trained.logits, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with set_gates(model, [None, None]) as applied:  # None: as trained
        torch.testing.assert_close(applied[0], torch.sigmoid(model.blocks[0].attn.gating_param.detach()))
        torch.testing.assert_close(trace(model, x).logits, trained.logits)


def test_the_fused_forward_follows_the_dial_too():
    model, x = _convit(), torch.randn(2, 1, 32, 32)
    with set_gates(model, [[0.0] * 4, [1.0] * 4]):
        torch.testing.assert_close(model(x), trace(model, x).logits, rtol=1e-4, atol=1e-5)


def test_threads_never_see_each_others_dial():
    model, x = _convit(), torch.randn(1, 1, 32, 32)
    settings = {v: [[v] * 4, [v] * 4] for v in (0.0, 0.3, 0.7, 1.0)}
    expected = {}
    for v, gates in settings.items():
        with set_gates(model, gates):
            expected[v] = trace(model, x).logits
    start = threading.Barrier(len(settings))

    def run(v: float) -> bool:
        start.wait()
        results = []
        for _ in range(5):
            with set_gates(model, settings[v]):
                results.append(torch.allclose(trace(model, x).logits, expected[v], atol=1e-6))
        return all(results) and gate_override(model.blocks[0].attn) is None

    with ThreadPoolExecutor(len(settings)) as pool:
        assert all(pool.map(run, settings))


@pytest.mark.parametrize(("value", "message"), [
    ([[0.5] * 4], "a list of 2 entries, one per GPSA block"),
    ("0.5", "a list of 2 entries"),
    ([[0.5] * 3, None], "GPSA block 0 must be null or 4 numbers in"),
    ([[0.5, 0.5, 0.5, 1.5], None], "GPSA block 0 must be null or 4 numbers in"),
    ([None, [0.5, float("nan"), 0.5, 0.5]], "GPSA block 1 must be null"),
    ([None, [True, 0, 0, 0]], "GPSA block 1 must be null"),
    ([None, ["0.5"] * 4], "GPSA block 1 must be null"),
])
def test_a_bad_dial_is_refused_in_one_sentence(value, message):
    with pytest.raises(ValueError, match=message):
        parse_gates(value, _convit())


def test_a_vit_has_no_gates_to_dial():
    vit = create_model("deit_tiny_patch16_224", img_size=32, patch_size=4, in_chans=1, embed_dim=16, num_heads=4,
                       depth=2, num_classes=5)
    with pytest.raises(ValueError, match="no GPSA blocks"):
        parse_gates(None, vit)


def test_the_probe_set_is_fixed_and_scored_like_the_card():
    loaded = zoo.load("convit_fmnist")
    probe = probe_set(loaded.card.recipe["data"])
    assert len(probe) == 256 and torch.equal(probe.labels, probe_set(loaded.card.recipe["data"]).labels)
    accuracy = probe_accuracy(loaded.model, probe, loaded.card.preprocessing)
    assert abs(accuracy - loaded.card.accuracy["test"]) < 0.1  # 256 of its 10,000 test images
    with set_gates(loaded.model, [[0.0] * 9] * 4):
        content_only = probe_accuracy(loaded.model, probe, loaded.card.preprocessing)
    assert content_only != accuracy


def test_a_dial_change_reruns_only_the_blocks_it_reaches_and_scores_as_a_whole_pass():
    loaded = zoo.load("convit_fmnist")
    model, pre = loaded.model, loaded.card.preprocessing
    probe = probe_set(loaded.card.recipe["data"])
    scorer = DialProbe(model, probe, pre)
    runs = [0] * len(model.blocks)
    hooks = [block.register_forward_hook(lambda *_, i=i: runs.__setitem__(i, runs[i] + 1))
             for i, block in enumerate(model.blocks)]
    heads, batches = model.blocks[0].attn.num_heads, -(-len(probe) // 64)
    # each setting, then the blocks it must run again: from the first GPSA block where it differs from the
    # closest of the last two settings scored
    steps = [([None] * 4, 0), ([None, None, None, [0.0] * heads], 3), ([None, [0.5] * heads, None, [0.0] * heads], 1),
             ([None, [0.5] * heads, [1.0] * heads, [0.0] * heads], 2), ([None, None, None, [1.0] * heads], 1),
             ([[0.0] * heads] * 4, 0)]
    try:
        for gates, first in steps:
            runs[:] = [0] * len(runs)
            score = scorer.accuracy(gates)
            assert runs == [0] * first + [batches] * (len(runs) - first), gates
            with set_gates(model, gates):
                assert score == probe_accuracy(model, probe, pre)
        runs[:] = [0] * len(runs)
        assert scorer.accuracy(steps[-1][0]) == score and runs == [0] * len(runs)  # scored just now: nothing runs
        # scores in the background keep nothing: two of them (kept, they would push out the all-content setting) ...
        for value in (1.0, 0.5):
            background = [[value] * heads] * 4
            with set_gates(model, background):
                assert scorer.accuracy(background, keep=False) == probe_accuracy(model, probe, pre)
        runs[:] = [0] * len(runs)
        scorer.accuracy([[0.0] * heads] * 3 + [[0.5] * heads])  # ... so this resumes from it, at GPSA block 3
        assert runs == [0] * 3 + [batches] * (len(runs) - 3)
    finally:
        for hook in hooks:
            hook.remove()


def test_dialling_by_hand_adds_up_head_by_head():
    """The tab's "by hand" control edits the current setting: one head, then another, then a whole block."""
    from app.service import Service
    from app.tabs.dial import ALL_HEADS, PRESETS, DialView

    view = DialView(Service("cpu"))
    by_hand = PRESETS[3]
    trained = [round(float(g), 3) for g in
               torch.sigmoid(zoo.load(MODEL).model.blocks[1].attn.gating_param.detach())]
    first = json.loads(view.gates_for(MODEL, by_hand, 1, 3, 0.0, ""))
    assert first[0] is None and first[2] is None and first[3] is None
    assert first[1] == trained[:3] + [0.0] + trained[4:]
    second = json.loads(view.gates_for(MODEL, by_hand, 1, 4, 1.0, json.dumps(first)))
    assert second[1] == trained[:3] + [0.0, 1.0] + trained[5:]
    third = json.loads(view.gates_for(MODEL, by_hand, 2, ALL_HEADS, 0.5, json.dumps(second)))
    assert third[1] == second[1] and third[2] == [0.5] * 9
    # a setting that does not fit (another model's, or half typed) starts again from the trained gates
    assert json.loads(view.gates_for(MODEL, by_hand, 0, 0, 0.25, "[[0.5, "))[1:] == [None] * 3
    assert view.gates_for(MODEL, PRESETS[0], 1, 3, 0.0, json.dumps(third)) == ""


def test_the_presets_are_scored_in_the_background_after_the_first_dial():
    """After a first turn of the dial on a model, its presets' probe accuracies are scored in the background, so
    choosing one answers at once (one yield, the accuracy in it) with what a whole pass gives."""
    from app.service import Service
    from app.tabs.dial import PRESETS, DialView

    service = Service("cpu")
    view = DialView(service)
    assert len(list(view.dial(str(SCENE), MODEL, "", "center"))) == 2  # as trained: not scored yet, then scored
    worker = next(t for t in threading.enumerate() if t.name == f"prescore-{MODEL}")
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert service.prescore(MODEL, [view.preset_gates(MODEL, p) for p in PRESETS[:3]]) is None  # once per model
    loaded = service.get_model(MODEL)
    probe = probe_set(loaded.card.recipe["data"])
    for preset in PRESETS[1:3]:
        gates = view.preset_gates(MODEL, preset)
        answers = list(view.dial(str(SCENE), MODEL, gates, "center"))
        assert len(answers) == 1, preset
        with set_gates(loaded.model, json.loads(gates)):
            assert answers[0][-1]["probe_accuracy"] == probe_accuracy(loaded.model, probe, loaded.card.preprocessing)


# --------------------------------------------------------------------------------------------------- /dial
@pytest.fixture(scope="module")
def client(app_server, tmp_path_factory) -> Client:
    return Client(app_server, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def _dial(client: Client, gates: str, query: str = "center") -> dict:
    *_, numbers = client.predict(image=handle_file(SCENE), model=MODEL, gates=gates, query=query, api_name="/dial")
    return numbers


def test_dial_all_content_changes_attention_and_probe_accuracy(client):
    blocks, heads = zoo.dimensions(MODEL)
    trained = _dial(client, "")
    zero = _dial(client, json.dumps([[0.0] * 9] * 4))
    assert zero["gates"] == [[0.0] * 9] * 4 and trained["gates"] != zero["gates"]
    assert trained["probe_images"] == zero["probe_images"] >= 256
    assert trained["probe_accuracy"] != zero["probe_accuracy"]
    assert _dial(client, json.dumps([[0.0] * 9] * 4))["probe_accuracy"] == zero["probe_accuracy"]  # (cached)
    assert len(zero["nonlocality"]) == blocks and len(zero["nonlocality"][0]) == heads
    assert zero["nonlocality"][:4] != trained["nonlocality"][:4]
    # as trained, the dial reports what /analyze reports
    _, _, summary, *_ = client.predict(handle_file(SCENE), MODEL, None, "center", api_name="/analyze")
    np.testing.assert_allclose(trained["gates"], summary["gates"]["sigma_lambda"], atol=1e-4)
    assert trained["top5"][0]["label"] == summary["top5"][0]["label"]
    with pytest.raises(AppError, match="GPSA block 2 must be null or 9 numbers"):
        _dial(client, json.dumps([None, None, [2.0] * 9, None]))
    with pytest.raises(AppError, match="not valid JSON"):
        _dial(client, "[[0.5, ")


def test_concurrent_dial_and_analyze_never_see_each_others_gates(client, app_server, tmp_path):
    zero = json.dumps([[0.0] * 9] * 4)
    # Images the server has not analysed yet (one pixel differs), so /analyze runs while the dials run
    pixels = np.array(Image.open(SCENE))
    images = []
    for i in range(4):
        pixels[0, 0] = i
        images.append(tmp_path / f"scene{i}.png")
        Image.fromarray(pixels).save(images[-1])
    loaded = zoo.load(MODEL)
    expected = [analyze(loaded.model, loaded.preprocess(load_image(p)).unsqueeze(0)).summary() for p in images]

    def dial_zero(_: int) -> bool:
        numbers = Client(app_server, verbose=False).predict(
            image=handle_file(SCENE), model=MODEL, gates=zero, query="center", api_name="/dial")[-1]
        return numbers["gates"] == [[0.0] * 9] * 4

    def analyze_one(i: int) -> bool:
        summary = Client(app_server, verbose=False).predict(handle_file(images[i]), MODEL, None, "center",
                                                            api_name="/analyze")[2]
        return (np.allclose(summary["gates"]["sigma_lambda"], expected[i]["gates"]["sigma_lambda"], atol=1e-5)
                and np.allclose(summary["nonlocality"]["per_head"], expected[i]["nonlocality"]["per_head"],
                                rtol=1e-4))

    with ThreadPoolExecutor(8) as pool:
        dials = [pool.submit(dial_zero, i) for i in range(4)]
        analyses = [pool.submit(analyze_one, i) for i in range(4)]
        assert all(f.result() for f in dials) and all(f.result() for f in analyses)


def test_a_page_that_scores_the_probe_itself_gets_the_maps_without_a_server_scoring(client, app_server):
    # app/tabs/dial.js names the models its page scores; the server then answers the maps and leaves the score
    setting = json.dumps([None, [0.25] * 9, None, None])  # (no preset: not scored in the background)
    *_, note, numbers = client.predict(image=handle_file(SCENE), model=MODEL, gates=setting, query="center",
                                       scored_in_page=json.dumps([MODEL]), api_name="/dial")
    assert numbers["probe_accuracy"] is None and numbers["probe_images"] == 256 and "Probe accuracy" not in note
    assert numbers["gates"][1] == [0.25] * 9
    # a page that scores other models (or sends anything else) leaves the score to the server
    for scored in (json.dumps(["convit_scenes"]), "not json", json.dumps({"a": 1})):
        *_, numbers = client.predict(image=handle_file(SCENE), model=MODEL, gates=setting, query="center",
                                     scored_in_page=scored, api_name="/dial")
        assert numbers["probe_accuracy"] is not None


def test_the_page_fetches_the_runtime_graphs_and_probe_as_plain_files(app_server):
    import httpx

    from petl_core.catalog import dial_graphs_manifest
    from petl_core.preprocess import prepare

    base = app_server.rstrip("/") + "/explorer"
    folder, manifest = dial_graphs_manifest(MODEL)
    with httpx.Client(timeout=60) as http:
        assert http.get(f"{base}/dial/{MODEL}/dial.json").json() == manifest
        for name in manifest["graphs"]:
            answer = http.get(f"{base}/dial/{MODEL}/{name}")
            assert answer.content == (folder / name).read_bytes() and "max-age" in answer.headers["cache-control"]
        module = http.get(f"{base}/runtime/ort.wasm.bundle.min.mjs")
        assert module.status_code == 200 and module.headers["content-type"].startswith("text/javascript")
        assert http.get(f"{base}/runtime/ort-wasm-simd-threaded.wasm.gz").content[:2] == b"\x1f\x8b"
        # the probe as the model sees it, and its labels
        loaded, about = zoo.load(MODEL), http.get(f"{base}/dial/{MODEL}/probe.json").json()
        probe, pre = probe_set(loaded.card.recipe["data"]), loaded.card.preprocessing
        expected = prepare(probe.images, 1, float(pre["mean"]), float(pre["std"]), train=False,
                           base_size=pre["base_size"], pad=pre["pad"])
        assert about == {"labels": probe.labels.tolist(), "shape": list(expected.shape)}
        images = np.frombuffer(http.get(f"{base}/dial/{MODEL}/probe.bin").content, "<f4")
        np.testing.assert_array_equal(images, expected.numpy().ravel())
        # nothing else: no other file, no model without shipped graphs, no way out of the folders
        for path in ("runtime/VERSION", "runtime/..%2FLICENSE", "runtime/%2E%2E", f"dial/{MODEL}/model.safetensors",
                     f"dial/{MODEL}/..%2Fcard.json", "dial/convit_fmnist/dial.json", "dial/deit_scenes/dial.json",
                     "dial/..%2F..%2Fapp.py/x", f"dial/{MODEL}/%2Fetc%2Fpasswd", "dial/nothing/probe.bin"):
            assert http.get(f"{base}/{path}").status_code == 404, path


def test_a_hub_convit_on_an_uploaded_weights_file_is_dialled_and_says_why_there_is_no_probe(client, tmp_path):
    """Issue 30 items 10-11: offline, a hub ConViT runs on a weights file of the user's (here timm's ConViT-Ti at its
    random initialisation, scripts/make_random_weights.py): /dial takes the file like /analyze and dials its maps,
    prediction and nonlocality, saying plainly that accuracy needs a labelled probe set; the line under the model
    describes it with the file; the Training tab says it shows the shipped runs instead."""
    from app.service import Service
    from app.tabs.replay import ReplayView
    from scripts.make_random_weights import make

    name = "convit_tiny.fb_in1k"
    weights = make(name, tmp_path / "convit_tiny_random.safetensors")
    loaded = zoo.load(name, file=weights)
    blocks = len([b for b in loaded.model.blocks if hasattr(b.attn, "gating_param")])
    heads = loaded.model.blocks[0].attn.num_heads
    gates = [[0.0] * heads] + [None] * (blocks - 1)  # block 0 content only
    *_, note, numbers = client.predict(handle_file(SCENE), name, json.dumps(gates), "center", True, "",
                                       handle_file(weights), api_name="/dial")
    assert numbers["probe_accuracy"] is None and numbers["probe_images"] == 0
    assert "No probe accuracy" in note and "labelled test images" in note
    from petl_core.inputs import model_input

    x = model_input(loaded, load_image(SCENE))[0].unsqueeze(0)
    with set_gates(loaded.model, gates):
        dialled = analyze(loaded.model, x)
    assert [d["label"] for d in numbers["top5"]] == [d["label"] for d in dialled.top5[0]]
    np.testing.assert_allclose(numbers["nonlocality"][0], dialled.nonlocality[0][0].numpy(), atol=1e-3)
    _, line = client.predict(name, handle_file(weights), api_name="/examples")
    assert "Weights: the file you uploaded" in line and "needs its weights" not in line
    note = ReplayView(Service("cpu")).pair(name)[2]
    assert f"{name} was not trained here" in note and "shipped" in note
