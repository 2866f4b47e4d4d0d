"""The locality atlas: petl_core.atlas against single-image traces, and the app's /atlas and /atlas_image over real
HTTP (tests/conftest.py starts `python app.py`)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from petl_core import metrics, trace, zoo
from petl_core.atlas import locality_atlas
from petl_core.dial import probe_accuracy, probe_set

pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

CONVIT, DEIT = "convit_scenes_gpsa50", "deit_scenes"


@pytest.fixture(scope="module")
def probe():
    return probe_set(zoo.load(CONVIT).card.recipe["data"])


@pytest.fixture(scope="module")
def atlases(probe) -> dict:
    """name: (loaded model, its atlas over the whole probe set)."""
    return {name: (loaded, locality_atlas(loaded.model, probe, loaded.card.preprocessing))
            for name in (CONVIT, DEIT) for loaded in [zoo.load(name)]}


@pytest.mark.parametrize("name", [CONVIT, DEIT])
def test_the_atlas_is_each_images_own_nonlocality_and_prediction(name, atlases, probe):
    loaded, atlas = atlases[name]
    blocks, heads = zoo.dimensions(name)
    assert atlas.nonlocality.shape == (len(probe), blocks, heads) == (256, blocks, heads)
    assert torch.equal(atlas.labels, probe.labels) and atlas.classes == loaded.card.classes
    assert atlas.gated_blocks == ([0, 1, 2, 3] if name == CONVIT else [])
    for i in (0, 31, 32, 200, 255):  # both sides of a batch boundary (32 images per pass) and the last image
        # the image as the app prepares an upload of it (its PNG through the card's transform), traced alone
        single = trace(loaded.model, loaded.preprocess(Image.fromarray(probe.images[i, 0].numpy())).unsqueeze(0))
        expected = torch.stack([metrics.nonlocality(a, single.grid, p)[0]
                                for a, p in zip(single.attention, single.num_prefix, strict=True)])
        torch.testing.assert_close(atlas.nonlocality[i], expected, rtol=1e-4, atol=1e-5)
        assert atlas.predictions[i] == single.logits.argmax(-1)[0]
    # scored like the dial's probe accuracy (the same images prepared the same way)
    assert atlas.correct.float().mean().item() == probe_accuracy(loaded.model, probe, loaded.card.preprocessing)


def test_convit_gpsa_layers_are_more_local_than_the_deits(atlases):
    """What the atlas is for: on the shipped pair, each GPSA layer's median head looks nearer than the same DeiT
    layer's (ConViT's local init survives training; the DeiT attends nearly uniformly)."""
    convit, deit = atlases[CONVIT][1].nonlocality, atlases[DEIT][1].nonlocality
    gpsa = atlases[CONVIT][1].gated_blocks
    assert (convit[:, gpsa].median(0).values.median(-1).values < deit[:, gpsa].median(0).values.median(-1).values).all()


# --------------------------------------------------------------------------------------------------- the app
@pytest.fixture(scope="module")
def client(app_server, tmp_path_factory) -> Client:
    return Client(app_server, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def test_atlas_endpoints_are_named(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert [p["parameter_name"] for p in endpoints["/atlas"]["parameters"]] == ["model"]
    assert [p["parameter_name"] for p in endpoints["/atlas_image"]["parameters"]] == ["model", "index"]


def test_atlas_draws_the_pair_and_returns_the_numbers(client, atlases, probe):
    figure, numbers = client.predict(model=DEIT, api_name="/atlas")  # a DeiT shows its pair too, ConViT first
    assert numbers["unit"] == "patches" and numbers["probe_images"] == len(probe)
    assert numbers["labels"] == probe.labels.tolist() and list(numbers["models"]) == ["ConViT", "DeiT"]
    for label, name in (("ConViT", CONVIT), ("DeiT", DEIT)):
        shown, atlas = numbers["models"][label], atlases[name][1]
        assert shown["name"] == name and shown["predictions"] == atlas.predictions.tolist()
        assert shown["probe_accuracy"] == pytest.approx(atlas.correct.float().mean().item(), abs=1e-4)
        assert len(shown["blocks"]) == atlas.nonlocality.shape[1]
        for layer, entry in enumerate(shown["blocks"]):
            assert (entry["block"], entry["gpsa"]) == (layer, layer in atlas.gated_blocks)
            for h, head in enumerate(entry["heads"]):
                values = np.array(head["values"])
                np.testing.assert_allclose(values, atlas.nonlocality[:, layer, h].numpy(), atol=1e-4)
                assert head["median"] == pytest.approx(np.median(values), abs=1e-4)
                assert head["q1"] <= head["median"] <= head["q3"]
    plot = json.loads(figure["plot"])
    layout = plot["layout"]
    assert layout["yaxis"]["title"]["text"] == "nonlocality (patches)"
    assert layout["yaxis2"]["matches"] == "y"  # one y range for both models
    assert [layout[f"xaxis{s}"]["title"]["text"] for s in ("", "2")] == ["block", "block"]
    titles = [a["text"] for a in layout["annotations"]]
    assert any(CONVIT in t for t in titles) and any(DEIT in t for t in titles)
    # every image is one point per layer and head; its hover names the image, its label and the prediction
    points = [t for t in plot["data"] if t["type"] == "scatter"]
    blocks, heads = zoo.dimensions(CONVIT)
    assert len(points) == 2 * heads and all(len(t["customdata"]) == blocks * len(probe) for t in points)
    index, truth, guess, layer = points[0]["customdata"][len(probe) + 17]  # ConViT, head 0, block 1, image 17
    assert (index, layer) == (17, 1) and truth == probe.classes[probe.labels[17]]
    assert guess == probe.classes[numbers["models"]["ConViT"]["predictions"][17]]
    assert "head 0" in points[0]["hovertemplate"] and "patches" in points[0]["hovertemplate"]


def test_a_model_of_another_task_shows_its_own_pair(client):
    _, numbers = client.predict(model="convit_fmnist", api_name="/atlas")
    assert {m["name"] for m in numbers["models"].values()} == {"convit_fmnist", "deit_fmnist"}


def test_atlas_image_is_the_probe_image(client, probe):
    path = client.predict(model=CONVIT, index=17, api_name="/atlas_image")
    assert np.array_equal(np.array(Image.open(path)), probe.images[17, 0].numpy())
    assert np.array_equal(np.array(Image.open(client.predict(model=DEIT, index="255", api_name="/atlas_image"))),
                          probe.images[255, 0].numpy())


@pytest.mark.parametrize("index", [-1, 256, 3.5, "abc", "1e9", "nan", "", [1], "../../etc/passwd"])
def test_a_bad_index_is_refused_with_the_valid_range(client, index):
    with pytest.raises(AppError, match=r"probe image .* does not exist here; choose one of 0-255"):
        client.predict(model=CONVIT, index=index, api_name="/atlas_image")


@pytest.mark.parametrize("model", ["../../etc/passwd", None, "deit_nope"])
def test_a_bad_model_is_refused(client, model):
    # the dropdown's own check (Gradio's) or the service's, whichever sees it first: either names what is wrong
    with pytest.raises(AppError, match="not in the list of choices|Choose a model first"):
        client.predict(model=model, api_name="/atlas")
