"""The equation in numbers: petl_core.equation's terms on the shipped models, and the app's /equation endpoint over
real HTTP."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from app.service import Service
from app.tabs.equation import EquationView
from petl_core import trace, zoo
from petl_core.dial import set_gates
from petl_core.equation import bypass_share, convpass_equation, gpsa_equation, residual_stream
from petl_core.figures import marked_maps_figure, query_maps
from petl_core.images import load_image
from petl_core.metrics import bypass_maps
from petl_core.query import CLS, Query

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "assets" / "examples" / "scene_dress.png"
DIGIT_SCENE = ROOT / "assets" / "examples" / "digit_scene_0.png"
CONVIT, CONVPASS, DEIT = "convit_scenes_gpsa50", "convpass_digit_scenes", "deit_scenes"


@cache
def _traced(name: str, image: Path = SCENE) -> tuple[zoo.Loaded, torch.Tensor, object]:
    """(loaded model, input batch (1, C, H, W), trace) of a shipped model on an example, as the app computes them."""
    loaded = zoo.load(name)
    x = loaded.preprocess(load_image(image)).unsqueeze(0)
    return loaded, x, trace(loaded.model, x)


def _token(t, block: int, query: Query) -> int:
    return 0 if query.is_cls else t.num_prefix[block] + query.patch[0] * t.grid[1] + query.patch[1]


# --------------------------------------------------------------------------------------------------- GPSA
def test_the_gpsa_identity_holds_for_every_block_and_head():
    loaded, _, t = _traced(CONVIT)
    for b in t.gated_blocks:
        sigma = t.gates[b][None, :, None, None]
        torch.testing.assert_close((1 - sigma) * t.content[b] + sigma * t.positional[b], t.attention[b],
                                   rtol=0, atol=1e-6)
        for h in range(t.attention[b].shape[1]):
            eq = gpsa_equation(t, b, h, Query.at(6, 6))
            assert eq.identity_error < 1e-6
            for terms in (*eq.top, eq.rest):
                assert terms.mix(eq.sigma) == pytest.approx(terms.attention, abs=1e-6)
        assert [gpsa_equation(t, b, h, Query.at(3, 4)).sigma for h in range(9)] == pytest.approx(
            torch.sigmoid(loaded.model.blocks[b].attn.gating_param).tolist(), abs=1e-6)


@pytest.mark.parametrize(("block", "head", "query"), [(0, 0, Query.at(6, 6)), (1, 3, Query.at(0, 0)),
                                                      (3, 8, Query.at(11, 5))])
def test_the_gpsa_terms_are_the_traces_weights_at_the_top_keys(block, head, query):
    _, _, t = _traced(CONVIT)
    eq = gpsa_equation(t, block, head, query, top_k=4)
    i = _token(t, block, query)
    rows = {name: getattr(t, name)[block][0, head, i] for name in ("content", "positional", "attention")}  # (P,)
    assert len(eq.top) == 4 and eq.sigma == pytest.approx(float(t.gates[block][head]))
    for k in eq.top:
        assert k.patch == divmod(k.key, t.grid[1])
        for name, row in rows.items():
            assert getattr(k, name) == pytest.approx(float(row[k.key]), abs=1e-7)
    # the top keys are the largest mixed weights; the rest is every other key (GPSA blocks have no class token)
    chosen = torch.tensor([k.key for k in eq.top])
    others = torch.ones_like(rows["attention"], dtype=torch.bool)
    others[chosen] = False
    assert [k.attention for k in eq.top] == sorted((k.attention for k in eq.top), reverse=True)
    assert eq.top[-1].attention >= float(rows["attention"][others].max())
    for name, row in rows.items():
        assert getattr(eq.rest, name) == pytest.approx(float(row[others].sum()), abs=1e-5)
        assert getattr(eq.rest, name) + sum(getattr(k, name) for k in eq.top) == pytest.approx(1.0, abs=1e-5)
        torch.testing.assert_close(getattr(eq, name), query_maps(t, block, query, part=name)[head])


def test_the_equation_uses_the_gates_as_dialled():
    loaded, x, _ = _traced(CONVIT)
    gates = [[0.25] * 9, None, [1.0] * 9, [0.0] * 9]
    with set_gates(loaded.model, gates):
        t = trace(loaded.model, x)
    eq = gpsa_equation(t, 0, 2, Query.at(5, 5))
    assert eq.sigma == 0.25 and eq.identity_error < 1e-6
    assert all(k.attention == pytest.approx(k.positional, abs=1e-6) for k in gpsa_equation(t, 2, 0, Query.at(5, 5)).top)
    assert all(k.attention == pytest.approx(k.content, abs=1e-6) for k in gpsa_equation(t, 3, 0, Query.at(5, 5)).top)


def test_the_maps_number_the_top_keys_on_one_labelled_scale():
    _, _, t = _traced(CONVIT)
    eq = gpsa_equation(t, 1, 3, Query.at(6, 6))
    fig = marked_maps_figure({"C": eq.content, "P": eq.positional, "A": eq.attention}, np.zeros((48, 48, 3)), (4, 4),
                             eq.query, "weight", "title", log_scale=True, keys=[k.patch for k in eq.top])
    picture, *maps, colour_bar = fig.axes
    assert picture.get_title() == "model input" and len(maps) == 3 and colour_bar.get_ylabel() == "weight"
    marks = {str(n): ((c + 0.5) * 4, (r + 0.5) * 4) for n, (r, c) in enumerate((k.patch for k in eq.top), start=1)}
    for ax in maps:
        assert {text.get_text(): text.get_position() for text in ax.texts} == marks
    norm = maps[0].images[0].norm
    assert all(len(ax.images) == 1 and ax.images[0].norm is norm for ax in maps)  # (no picture under a map)
    assert norm.vmax == pytest.approx(max(float(eq.content.max()), float(eq.positional.max()),
                                          float(eq.attention.max())))


@pytest.mark.parametrize(("block", "head", "query", "message"), [
    (0, 0, CLS, "no class token"),
    (4, 0, Query.at(1, 1), r"block 4 is not a GPSA block; the GPSA blocks are \[0, 1, 2, 3\]"),
    (0, 9, Query.at(1, 1), "head 9 does not exist: block 0 has heads 0-8"),
])
def test_a_gpsa_equation_that_does_not_exist_is_refused(block, head, query, message):
    with pytest.raises(ValueError, match=message):
        gpsa_equation(_traced(CONVIT)[2], block, head, query)


# --------------------------------------------------------------------------------------------------- Convpass
@pytest.mark.parametrize("query", [Query.at(5, 7), Query.at(0, 11), CLS])
def test_the_convpass_terms_are_the_residual_stream_and_the_captures(query):
    loaded, x, t = _traced(CONVPASS, DIGIT_SCENE)
    model = loaded.model
    with torch.no_grad():
        # what enters each block, and after the last one what the final norm receives
        streams = [residual_stream(model, x, b) for b in range(len(model.blocks))]
        features = model.forward_features(x)
    for b in range(len(model.blocks)):
        eq = convpass_equation(model, x, t, b, query)
        i = _token(t, b, query)
        attn, mlp = eq.branches
        assert (attn.branch, mlp.branch) == ("attn", "mlp") and eq.scale == model.convpass_config.scale
        torch.testing.assert_close(attn.stream, streams[b][0, i])
        torch.testing.assert_close(mlp.stream, attn.output)  # the MLP branch starts where attention left it
        for terms in eq.branches:
            torch.testing.assert_close(terms.main, t.bypass[b][terms.branch].main[0, i])
            torch.testing.assert_close(terms.bypass, t.bypass[b][terms.branch].output[0, i])
        # x + main + s·bypass, twice, is what the next block receives
        if b + 1 < len(model.blocks):
            torch.testing.assert_close(mlp.output, streams[b + 1][0, i], rtol=1e-5, atol=1e-5)
        else:
            torch.testing.assert_close(model.norm(mlp.output), features[0, i], rtol=1e-5, atol=1e-5)


def test_the_bypass_share_is_the_ratio_metric_in_zero_one():
    loaded, x, t = _traced(CONVPASS, DIGIT_SCENE)
    for b in (0, 3, 5):
        maps = bypass_maps(t.bypass[b], t.grid, t.num_prefix[b])
        for query in (Query.at(5, 7), CLS):
            for terms in convpass_equation(loaded.model, x, t, b, query).branches:
                ratio = maps[terms.branch].ratio[0]
                torch.testing.assert_close(terms.share_map, ratio / (1 + ratio))
                assert 0 <= terms.share_map.min() and terms.share_map.max() <= 1 and 0 <= terms.share <= 1
                main, bypass = terms.main.norm(), terms.bypass.norm()
                assert terms.share == pytest.approx(float(bypass / (main + bypass)), rel=1e-5)
                if not query.is_cls:
                    assert terms.share == pytest.approx(float(terms.share_map[query.patch]), rel=1e-6)
    assert bypass_share(torch.tensor([0.0, 1.0, 3.0])).tolist() == [0.0, 0.5, 0.75]


def test_a_model_without_the_term_is_refused():
    loaded, x, t = _traced(DEIT)
    with pytest.raises(ValueError, match=r"not a GPSA block; the GPSA blocks are \[\]"):
        gpsa_equation(t, 0, 0, Query.at(1, 1))
    with pytest.raises(ValueError, match=r"no Convpass bypass; the blocks with one are \[\]"):
        convpass_equation(loaded.model, x, t, 0, Query.at(1, 1))
    with pytest.raises(ValueError, match="block 6 does not exist: the model has blocks 0-5"):
        residual_stream(loaded.model, x, 6)


# --------------------------------------------------------------------------------------------------- /equation
def test_the_tabs_controls_fit_the_analysed_model():
    view = EquationView(Service("cpu"))
    fitted = {name: view.fit(str(SCENE), name, None, 5, 8) for name in (CONVIT, CONVPASS, DEIT)}
    block, head = fitted[CONVIT]
    assert [v for _, v in block.choices] == [0, 1, 2, 3] and block.value == 0 and block.visible is True
    assert head.maximum == 8 and head.visible is True
    block, head = fitted[CONVPASS]  # every block has bypasses; a block that exists is kept; no heads to choose
    assert [v for _, v in block.choices] == list(range(6)) and block.value == 5 and head.visible == "hidden"
    block, head = fitted[DEIT]
    assert block.choices == [] and block.visible == head.visible == "hidden"


@pytest.fixture(scope="module")
def client(app_server, tmp_path_factory) -> Client:
    return Client(app_server, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def _equation(client: Client, image: Path, model: str, query: str, block, head) -> tuple:
    return client.predict(image=handle_file(image), model=model, query=query, block=block, head=head,
                          api_name="/equation")


def test_equation_endpoint_fills_in_a_convit_heads_numbers(client):
    figure, text, numbers = _equation(client, SCENE, CONVIT, "6,6", 1, 3)
    expected = gpsa_equation(_traced(CONVIT)[2], 1, 3, Query.at(6, 6))
    assert figure["type"] == "matplotlib" and numbers["kind"] == "gpsa" and numbers["query"] == "6,6"
    assert numbers["sigma"] == pytest.approx(expected.sigma, abs=1e-6)
    assert [k["patch"] for k in numbers["top"]] == [list(k.patch) for k in expected.top]
    for got, want in zip(numbers["top"], expected.top, strict=True):
        assert got["attention"] == pytest.approx(want.attention, abs=1e-6)
        assert got["formula"] == pytest.approx(got["attention"], abs=1e-6)
        assert f"{want.content:.4f}" in text and f"{want.positional:.4f}" in text and f"{want.attention:.4f}" in text
    assert numbers["rest"]["keys"] == 144 - len(expected.top) and f"σ = σ(λ) = **{expected.sigma:.4f}**" in text
    # the class token has not joined in a GPSA block: the centre patch, said so
    _, text, numbers = _equation(client, SCENE, CONVIT, "cls", 1, 3)
    assert numbers["query"] == "6,6" and "The class token joins after the GPSA blocks" in text


def test_equation_endpoint_fills_in_a_convpass_update(client):
    loaded, x, t = _traced(CONVPASS, DIGIT_SCENE)
    for query, q in (("5,7", Query.at(5, 7)), ("cls", CLS)):
        figure, text, numbers = _equation(client, DIGIT_SCENE, CONVPASS, query, 2, 0)
        expected = convpass_equation(loaded.model, x, t, 2, q)
        assert figure["type"] == "matplotlib" and numbers["kind"] == "convpass"
        assert numbers["scale"] == loaded.model.convpass_config.scale and f"s = **{expected.scale:g}**" in text
        for terms in expected.branches:
            got = numbers["branches"][terms.branch]
            assert got["share"] == pytest.approx(terms.share, abs=1e-6) and f"**{terms.share:.4f}**" in text
            assert got["stream_norm"] == pytest.approx(float(terms.stream.norm()), rel=1e-5)
            assert got["bypass_norm"] == pytest.approx(float(terms.bypass.norm()), rel=1e-5)
            torch.testing.assert_close(torch.tensor(got["share_map"]), terms.share_map, atol=1e-5, rtol=0)


def test_equation_endpoint_explains_a_deit_and_refuses_bad_parameters(client):
    figure, text, numbers = _equation(client, SCENE, DEIT, "center", 0, 0)
    assert numbers == {"model": DEIT, "kind": None}
    assert "neither GPSA gates nor Convpass bypasses" in text
    (said,) = json.loads(figure["plot"])["layout"]["annotations"]  # (the message wraps: plots.message_figure)
    assert "no equation" in said["text"].replace("<br>", " ")
    with pytest.raises(AppError, match="GPSA block 7 does not exist here; choose one of 0-3"):
        _equation(client, SCENE, CONVIT, "center", 7, 0)
    with pytest.raises(AppError, match="head 9 does not exist here; choose one of 0-8"):
        _equation(client, SCENE, CONVIT, "center", 0, 9)
    with pytest.raises(AppError, match="outside the 12×12 patch grid"):
        _equation(client, DIGIT_SCENE, CONVPASS, "12,0", 0, 0)
