"""The model zoo: shipped entries made from real (tiny) training runs, hub entries with no network, local files."""
from __future__ import annotations

import json
import shutil
import socket
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from timm.models import get_pretrained_cfg

from petl_core import ConvpassConfig, add_convpass, building, create_model, hub, zoo
from petl_core.analysis import class_names
from petl_core.checkpoint import CheckpointError
from petl_core.data import dataset_spec, digits, load_test_set, synthetic
from petl_core.images import image_transform
from petl_core.models import HubUnavailableError
from petl_core.preprocess import prepare
from petl_core.registry import ARCHITECTURES
from petl_core.train import TrainConfig, train

HUB_NAMES = ["convit_tiny.fb_in1k", "convit_small.fb_in1k", "deit_tiny_patch16_224.fb_in1k",
             "deit_small_patch16_224.fb_in1k", "vit_base_patch16_224.orig_in21k"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three real training runs (ConViT and DeiT from scratch, Convpass on the DeiT) shipped into a temporary root."""
    base = tmp_path_factory.mktemp("zoo")
    convit, deit, convpass, root = base / "convit", base / "deit", base / "convpass", base / "assets"
    train(TrainConfig(method="convit", data="synthetic", steps=2, batch=16, eval_points=1, probe_size=16,
                      gate_grad_batches=2, out=str(convit)), progress=False)
    train(TrainConfig(method="deit", data="synthetic", steps=3, batch=16, eval_points=1, probe_size=16,
                      out=str(deit)), progress=False)
    train(TrainConfig(method="convpass", data="digits", backbone=str(deit / "model.safetensors"), steps=2, batch=16,
                      eval_points=1, probe_size=16, snapshots=True, out=str(convpass)), progress=False)
    zoo.write_entry(convit, "tiny_convit", "ConViT, 2 steps on bars", root=root)
    zoo.write_entry(deit, "tiny_deit", "DeiT, 3 steps on bars", root=root)
    zoo.write_entry(convpass, "tiny_convpass", "Convpass on tiny_deit, 2 steps on digits", root=root,
                    backbone="tiny_deit")
    return {"tiny_convit": convit, "tiny_deit": deit, "tiny_convpass": convpass, "root": root}


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """The hub switched off and an empty Hugging Face cache: nothing may use the network."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    return tmp_path / "hf_cache"


def _pil(images: torch.Tensor, index: int) -> Image.Image:
    return Image.fromarray(images[index, 0].numpy(), "L")


def _by_hand(entry, run) -> torch.nn.Module:
    """The entry's model built the ordinary way from its card and its run's whole weights (random init, then the
    weights)."""
    card = zoo.ModelCard.load(entry)
    model = create_model(card.architecture["timm_name"], **card.architecture["kwargs"])
    if card.convpass:
        add_convpass(model, **card.convpass)
    model.load_state_dict(load_file(str(run / "model.safetensors")))
    return model.eval()


# --------------------------------------------------------------------------------------------------- shipped
def test_shipped_entries_are_listed_and_available(runs, no_hub, monkeypatch):
    listed = {e.name: e for e in zoo.list_models(runs["root"])}
    assert (listed["tiny_deit"].source, listed["tiny_deit"].family, listed["tiny_deit"].available) == \
        ("shipped", "vit", True)
    assert (listed["tiny_convpass"].source, listed["tiny_convpass"].family, listed["tiny_convpass"].available) == \
        ("shipped", "convpass", True)
    assert (listed["tiny_convit"].source, listed["tiny_convit"].family, listed["tiny_convit"].available) == \
        ("shipped", "convit", True)
    assert listed["tiny_deit"].title == "DeiT, 3 steps on bars" and listed["tiny_deit"].reason == ""
    for name in zoo.SHIPPED:  # the project's own entries are offered, and said to be missing from this root
        assert listed[name].source == "shipped" and not listed[name].available
        assert "not shipped yet" in listed[name].reason
    monkeypatch.setenv("PETL_ASSETS", str(runs["root"]))
    assert [e.name for e in zoo.list_models()] == list(listed)
    assert zoo.load("tiny_deit").card.name == "tiny_deit"


def test_cards_come_from_the_run_history(runs):
    for name in ("tiny_convit", "tiny_deit", "tiny_convpass"):
        entry = runs["root"] / name
        history = json.loads((runs[name] / "history.json").read_text())
        card = zoo.ModelCard.load(entry)
        assert card.accuracy == {"test": history["entries"][-1]["test_accuracy"],
                                 "test_images": history["data"]["test_images"], "step": history["steps"]}
        assert card.classes == history["data"]["classes"]
        assert card.parameters == history["parameters"]
        assert card.wall_time_s == history["entries"][-1]["wall_time"]
        assert {k: card.preprocessing[k] for k in ("mean", "std")} == history["data"]["normalisation"]
        assert (card.preprocessing["base_size"], card.preprocessing["pad"]) == (28, 2)
        timm_name, kwargs = ARCHITECTURES["convit" if name == "tiny_convit" else "deit"]
        assert card.architecture == {"timm_name": timm_name,
                                     "kwargs": {**kwargs, "num_classes": len(card.classes)}}
        assert card.made_with.startswith("python -m petl_core train --method ")
        described = dataset_spec(history["config"]["data"]).description  # what the model recognises, on what
        assert described and card.data.startswith(described)
        for key in ("title", "data", "recipe", "hardware", "software"):
            assert getattr(card, key)
        if name != "tiny_convpass":  # (which ships its bypasses and head only: see below)
            assert load_file(str(entry / "model.safetensors")).keys() == load_file(
                str(runs[name] / "model.safetensors")).keys()
    deit, convpass = zoo.ModelCard.load(runs["root"] / "tiny_deit"), zoo.ModelCard.load(runs["root"] / "tiny_convpass")
    assert deit.method == "deit" and deit.convpass is None and deit.backbone is None
    assert convpass.method == "convpass" and convpass.backbone == "tiny_deit" and convpass.family == "convpass"
    assert convpass.convpass == asdict(ConvpassConfig(dim=8, scale=10.0, where="both"))
    assert convpass.classes == [str(c) for c in range(10)] and convpass.accuracy["test_images"] == 797
    assert "--data digits" in convpass.made_with and "--steps 2" in convpass.made_with
    assert convpass.parameters["trainable"] < convpass.parameters["total"]
    # what is saved loads back equal, and card.json holds only what the entry is (not how it was loaded)
    assert zoo.ModelCard.from_dict(convpass.to_dict()) == convpass
    assert "source" not in json.loads((runs["root"] / "tiny_convpass" / "card.json").read_text())

def test_a_card_needs_a_finished_run(runs):
    history = json.loads((runs["tiny_deit"] / "history.json").read_text())
    history["entries"] = history["entries"][:1]  # only the step-0 evaluation: the run was interrupted
    with pytest.raises(ValueError, match="stopped at step 0 of 3"):
        zoo.card_from_history(history, "x", "x")


@pytest.mark.parametrize("name", ["tiny_convit", "tiny_deit", "tiny_convpass"])
def test_shipped_models_equal_models_built_by_hand(runs, name):
    loaded = zoo.load(name, root=runs["root"])
    assert loaded.source == "shipped" and loaded.name == name and loaded.card.source == "shipped"
    assert not any(m.training for m in loaded.model.modules())
    assert loaded.model.label_names == loaded.card.classes == class_names(loaded.model)
    assert not any(t.is_meta for t in [*loaded.model.parameters(), *loaded.model.buffers()])
    reference = _by_hand(runs["root"] / name, runs[name])
    test_images = (digits()[1] if name == "tiny_convpass" else synthetic(num_images=128, seed=1)).images
    pre = loaded.card.preprocessing
    x = torch.stack([loaded.preprocess(_pil(test_images, i)) for i in range(4)])
    assert torch.equal(x, prepare(test_images[:4], 1, pre["mean"], pre["std"], train=False))
    with torch.no_grad():
        assert torch.equal(loaded.model(x), reference(x))
    if name == "tiny_convpass":  # the bypasses are there, trained (their up-projections no longer zero)
        assert loaded.model.convpass_config == ConvpassConfig(**loaded.card.convpass)
        assert loaded.model.blocks[0].adapter_attn.adapter_up.weight.abs().sum() > 0


def test_preprocess_is_the_evaluation_path(runs):
    loaded = zoo.load("tiny_deit", root=runs["root"])
    pre = loaded.card.preprocessing
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (28, 28), dtype=np.uint8)  # a Fashion-MNIST-sized image: no resizing at all
    x = loaded.preprocess(Image.fromarray(image, "L"))
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32
    expected = prepare(torch.from_numpy(image)[None, None], 1, pre["mean"], pre["std"], train=False)[0]
    assert torch.equal(x, expected)
    assert torch.allclose(x[:, :2], torch.full((1, 2, 32), -pre["mean"] / pre["std"]))  # the zero padding
    # A colour photo that is not square: grayscale, then the centred square, nothing squashed.
    photo = Image.fromarray(rng.integers(0, 256, (40, 70, 3), dtype=np.uint8), "RGB")
    gray = np.asarray(photo.convert("L"))[:, 15:55]
    expected = prepare(torch.from_numpy(gray.copy())[None, None], 1, pre["mean"], pre["std"], train=False)[0]
    assert torch.equal(loaded.preprocess(photo), expected)
    assert loaded.preprocess(Image.new("RGB", (4000, 3000), "white")).shape == (1, 32, 32)


def test_shipping_again_replaces_the_entrys_snapshots(runs, tmp_path):
    """A run shipped over an entry of an earlier run leaves only its own snapshots (no step of the earlier run)."""
    root = tmp_path / "assets"
    zoo.write_entry(runs["tiny_convpass"], "again", "Convpass", root=root, backbone=str(runs["tiny_deit"]))
    stale = root / "again" / "snapshots" / "step999999.safetensors"
    shutil.copyfile(next((root / "again" / "snapshots").iterdir()), stale)
    zoo.write_entry(runs["tiny_convpass"], "again", "Convpass", root=root, backbone=str(runs["tiny_deit"]))
    shipped = sorted(p.name for p in (root / "again" / "snapshots").iterdir())
    assert shipped == sorted(p.name for p in (runs["tiny_convpass"] / "snapshots").iterdir()) and shipped
    assert not stale.exists()


def test_shipped_models_are_built_without_random_initialisation(runs, monkeypatch):
    """What makes loading fast (bench/model_load.py times it): timm builds the architecture on the meta device, once."""
    devices = []

    def construct(card):
        devices.append(torch.get_default_device().type)
        return build(card)

    build = building.construct
    monkeypatch.setattr(building, "construct", construct)
    for name in ("tiny_convit", "tiny_deit", "tiny_convpass"):
        devices.clear()
        model = zoo.load(name, root=runs["root"]).model
        assert devices == ["meta"], name
        assert all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()])


def test_shipped_errors_are_clear(runs, tmp_path):
    with pytest.raises(ValueError, match="unknown model 'nope'; the zoo has .*tiny_deit"):
        zoo.load("nope", root=runs["root"])
    with pytest.raises(CheckpointError, match="convit_fmnist is not shipped yet"):
        zoo.load("convit_fmnist", root=tmp_path)
    with pytest.raises(ValueError, match="shipped model: it takes no timm arguments"):
        zoo.load("tiny_deit", root=runs["root"], num_classes=3)
    with pytest.raises(CheckpointError, match="weights file not found"):
        zoo.load("tiny_deit", root=runs["root"], file=tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="does not fit this architecture"):
        zoo.load("tiny_deit", root=runs["root"], file=runs["tiny_convpass"] / "model.safetensors")
    own = zoo.load("tiny_deit", root=runs["root"], file=runs["root"] / "tiny_deit" / "model.safetensors")
    assert own.source == "local" and own.card.accuracy["test"] is None
    shutil.copytree(runs["root"] / "tiny_deit", tmp_path / "tiny_deit")
    shutil.copytree(runs["root"] / "tiny_convpass", tmp_path / "broken")
    shutil.copyfile(runs["root"] / "tiny_deit" / "model.safetensors", tmp_path / "broken" / "adapters.safetensors")
    with pytest.raises(CheckpointError, match="broken: adapters.safetensors is not a Convpass adapter file"):
        zoo.load("broken", root=tmp_path)
    card = json.loads((tmp_path / "broken" / "card.json").read_text())
    del card["preprocessing"]["mean"]
    (tmp_path / "broken" / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"lacks preprocessing\.mean"):
        zoo.load("broken", root=tmp_path)
    assert not {e.name: e for e in zoo.list_models(tmp_path)}["broken"].available


_DEIT_ARCH = {"timm_name": "deit_tiny_patch16_224", "kwargs": {}}


@pytest.mark.parametrize(("change", "message"), [
    ({"classes": "cat"}, "classes must be a list of names, not str"),
    ({"classes": [1, 2]}, "classes must be a list of names, not of other things"),
    ({"name": 5}, "name must be text, not int"),
    ({"accuracy": True}, "accuracy must be an object, not bool"),
    ({"wall_time_s": "soon"}, "wall_time_s must be a number, not str"),
    ({"shell": "rm -rf /"}, "unknown card fields shell"),
    ({"classes": None}, "classes must be a list of names, not NoneType"),
    ({"architecture": {**_DEIT_ARCH, "kwargs": {"pretrained": True}}}, "kwargs may not set pretrained"),
    ({"architecture": {**_DEIT_ARCH, "kwargs": {"pretrained_cfg_overlay": {"file": "/etc/passwd"}}}},
     "kwargs may not set pretrained_cfg_overlay"),
    ({"architecture": {"timm_name": ["deit"], "kwargs": {}}}, "architecture must hold timm_name"),
    ({"method": "convpass"}, "a convpass card must name its backbone"),
])
def test_a_hostile_card_is_refused_in_one_sentence(runs, tmp_path, change, message):
    shutil.copytree(runs["root"] / "tiny_deit", tmp_path / "tiny_deit")
    path = tmp_path / "tiny_deit" / "card.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(CheckpointError, match=message) as refused:
        zoo.load("tiny_deit", root=tmp_path)
    assert str(refused.value).startswith(str(path)) and "\n" not in str(refused.value)
    assert not {e.name: e for e in zoo.list_models(tmp_path)}["tiny_deit"].available
    path.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="a card is a JSON object, not list"):
        zoo.load("tiny_deit", root=tmp_path)


# --------------------------------------------------------------------------------------------------- hub
@pytest.fixture
def connections(monkeypatch) -> list[tuple]:
    """Every TCP connection opened (each is refused at once): (address, timeout)."""
    opened = []

    def connect(address, timeout=None, *args, **kwargs):
        opened.append((address, timeout))
        raise ConnectionRefusedError("refused by the test")

    monkeypatch.setattr(socket, "create_connection", connect)
    return opened


def test_hub_entries_are_listed_and_unavailable_offline(no_hub, connections):
    offered = [e for e in zoo.list_models() if e.source == "hub"]
    assert connections == []  # the offline flag is enough: no probe
    assert [e.name for e in offered] == HUB_NAMES
    assert all(not e.available and "HF_HUB_OFFLINE" in e.reason for e in offered)
    assert [e.name for e in offered if e.convpass_ready] == ["vit_base_patch16_224.orig_in21k"]
    assert {e.family for e in offered} == {"convit", "vit"}


def test_hub_load_offline_fails_at_once_in_one_sentence(no_hub, connections, monkeypatch):
    monkeypatch.setattr(zoo, "create_model", lambda *a, **k: pytest.fail("timm must not be asked"))
    with pytest.raises(HubUnavailableError) as error:
        zoo.load("convit_tiny.fb_in1k")
    assert connections == []
    message = str(error.value)
    assert message.startswith("convit_tiny.fb_in1k needs its weights from the Hugging Face hub")
    assert "pass a local weights file instead." in message and "\n" not in message and message.count(". ") == 0


def test_hub_load_unreachable_fails_fast_without_the_offline_flag(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setattr(zoo, "create_model", lambda *a, **k: pytest.fail("timm must not be asked"))
    opened, connect = [], socket.create_connection

    def counted(address, timeout=None, *args, **kwargs):
        opened.append((address, timeout))
        return connect(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counted)
    with pytest.raises(HubUnavailableError, match="cannot be reached from here; pass a local weights file instead"):
        zoo.load("deit_small_patch16_224.fb_in1k")
    # one probe, bounded in time (a thread bounds a hanging DNS lookup too), and no download attempted
    assert opened == [(("127.0.0.1", 9), hub.TIMEOUT_S)]


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_hub_name_with_a_local_timm_file(no_hub, tmp_path, suffix):
    torch.manual_seed(3)
    reference = create_model("deit_tiny_patch16_224").eval()
    path = tmp_path / f"deit_tiny{suffix}"
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save({"model": state}, path)
    loaded = zoo.load("deit_tiny_patch16_224.fb_in1k", file=path)
    assert loaded.source == "hub" and not loaded.model.training
    assert loaded.card.weights == path.name and loaded.card.accuracy["test"] is None  # no server path
    assert loaded.card.accuracy["note"] == "not measured here" and len(loaded.card.classes) == 1000
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (180, 240, 3), dtype=np.uint8), "RGB")
    x = loaded.preprocess(image)
    assert x.shape == (3, 224, 224) and torch.equal(x, image_transform(reference)(image))
    with torch.no_grad():
        assert torch.equal(loaded.model(x[None]), reference(x[None]))


def test_hub_weights_in_the_huggingface_cache_load_offline(no_hub):
    torch.manual_seed(4)
    reference = create_model("deit_tiny_patch16_224").eval()
    repo = no_hub / "models--timm--deit_tiny_patch16_224.fb_in1k"
    sha = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    (repo / "snapshots" / sha).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()},
              str(repo / "snapshots" / sha / "model.safetensors"))
    listed = {e.name: e for e in zoo.list_models()}
    assert listed["deit_tiny_patch16_224.fb_in1k"].available
    assert not listed["deit_small_patch16_224.fb_in1k"].available
    loaded = zoo.load("deit_tiny_patch16_224.fb_in1k")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), reference(x))


def test_wrong_local_files_for_hub_names_give_a_clear_error(no_hub, tmp_path):
    with pytest.raises(CheckpointError, match="weights file not found"):
        zoo.load("deit_tiny_patch16_224.fb_in1k", file=tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a weights file")
    with pytest.raises(CheckpointError, match="garbage.safetensors is not a readable safetensors file") as error:
        zoo.load("deit_tiny_patch16_224.fb_in1k", file=garbage)  # vetted before timm reads it
    assert "\n" not in str(error.value)
    timm_name, kwargs = ARCHITECTURES["convit"]
    other = tmp_path / "convit.safetensors"
    save_file(create_model(timm_name, **kwargs).state_dict(), str(other))
    pattern = r"^convit.safetensors does not hold weights of deit_tiny_patch16_224.fb_in1k: \d+ tensors of another"
    with pytest.raises(CheckpointError, match=pattern + r" shape .*; \d+ missing \(e.g. blocks.0.attn.qkv.weight\)"):
        zoo.load("deit_tiny_patch16_224.fb_in1k", file=other)


# --------------------------------------------------------------------------------------------------- local files
def test_load_local_run_and_timm_files(runs, tmp_path):
    from_run = zoo.load_local(runs["tiny_convpass"] / "model.safetensors")  # history.json beside it
    shipped = zoo.load("tiny_convpass", root=runs["root"])
    assert from_run.source == "local" and from_run.card.accuracy == shipped.card.accuracy
    image = _pil(digits()[1].images, 0)
    x = from_run.preprocess(image)
    assert torch.equal(x, shipped.preprocess(image))
    with torch.no_grad():
        assert torch.equal(from_run.model(x[None]), shipped.model(x[None]))

    timm_name, kwargs = ARCHITECTURES["convit"]
    torch.manual_seed(5)
    reference = create_model(timm_name, num_classes=3, **kwargs).eval()
    path = tmp_path / "mine.safetensors"
    save_file(reference.state_dict(), str(path))
    mine = zoo.load_local(path, timm_name, num_classes=3, **kwargs)
    assert mine.source == "local" and mine.card.method == "convit" and not mine.model.training
    y = mine.preprocess(image)
    assert y.shape == (1, 32, 32)
    with torch.no_grad():
        assert torch.equal(mine.model(y[None]), reference(y[None]))

    deit_name, deit_kwargs = ARCHITECTURES["deit"]
    with pytest.raises(CheckpointError, match="mine.safetensors does not fit this architecture"):
        zoo.load_local(path, deit_name, **deit_kwargs)
    with pytest.raises(ValueError, match="pass timm_name"):
        zoo.load_local(path)
    with pytest.raises(CheckpointError, match="not found"):
        zoo.load_local(tmp_path / "nowhere.safetensors", timm_name)


# --------------------------------------------------------------------------------------------------- the real ones
@pytest.mark.parametrize("name", list(zoo.SHIPPED))
def test_real_shipped_models(name):
    loaded = zoo.load(name, root=zoo.ASSETS)
    assert not loaded.model.training and loaded.model.label_names == loaded.card.classes
    if loaded.card.method.startswith("convpass"):
        assert loaded.card.backbone in zoo.SHIPPED
        assert not (zoo.ASSETS / name / "model.safetensors").exists()  # bypasses and head only
    size = loaded.card.architecture["kwargs"]["img_size"]
    x = loaded.preprocess(Image.new("L", (28, 28)))
    assert x.shape == (1, size, size) and loaded.model(x[None]).shape == (1, len(loaded.card.classes))
    assert len(zoo.snapshot_steps(name)) >= 12 or name in _SHIPPED_BEFORE_SNAPSHOTS


_SHIPPED_BEFORE_SNAPSHOTS = ("convit_fmnist", "deit_fmnist", "convpass_digits")  # trained before snapshots existed


@pytest.mark.slow
@pytest.mark.parametrize("name", list(zoo.SHIPPED))
def test_shipped_accuracy_is_remeasured_on_the_fixed_test_set(name):
    """The card's test accuracy, measured again here on the whole fixed test set of the data it names."""
    loaded = zoo.load(name)
    card, pre = loaded.card, loaded.card.preprocessing
    test = load_test_set(card.recipe["data"])
    assert card.accuracy["test_images"] == len(test)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test), 500):
            x = prepare(test.images[start:start + 500], pre["in_chans"], pre["mean"], pre["std"], train=False,
                        base_size=pre["base_size"], pad=pre["pad"])
            correct += (loaded.model(x).argmax(-1) == test.labels[start:start + 500]).sum().item()
    assert abs(correct / len(test) - card.accuracy["test"]) <= 1 / len(test)  # a tie may break either way
    assert card.accuracy["test"] > 1.5 / len(card.classes)  # far above chance


def test_initial_model_is_the_architecture_at_its_init():
    """The reference the app measures "at init" against: the shipped ConViT's architecture freshly initialised."""
    card = zoo.ModelCard.load(zoo.ASSETS / "convit_fmnist")
    start = zoo.initial_model(card, seed=0)
    again = zoo.initial_model(card, seed=0)
    trained = zoo.load("convit_fmnist").model
    for (name, a), b in zip(start.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # seeded: the same reference every time
    gates = torch.stack([torch.sigmoid(b.attn.gating_param) for b in start.blocks[:4]])
    torch.testing.assert_close(gates, torch.full_like(gates, torch.sigmoid(torch.tensor(1.0)).item()))
    assert not torch.equal(start.blocks[0].attn.qk.weight, trained.blocks[0].attn.qk.weight)
    assert start.label_names == card.classes and not start.training


def test_an_adapted_models_snapshots_hold_only_what_training_changes(runs):
    steps = zoo.snapshot_steps("tiny_convpass", root=runs["root"])
    assert steps == [0, 2]  # its evaluation points
    first, last = (zoo.load("tiny_convpass", root=runs["root"], snapshot=s) for s in steps)
    snapshot = load_file(str(runs["root"] / "tiny_convpass" / "snapshots" / "step000002.safetensors"))
    assert snapshot and all(k.startswith("head.") or "adapter" in k for k in snapshot)  # not the frozen backbone
    assert all(v.dtype == torch.float16 for v in snapshot.values())
    shipped = zoo.load("tiny_convpass", root=runs["root"]).model.state_dict()
    for key, value in last.model.state_dict().items():  # the last snapshot is the shipped model, to fp16
        torch.testing.assert_close(value, shipped[key], atol=1e-3, rtol=1e-3)
    assert not torch.equal(first.model.head.weight, last.model.head.weight)
    history = zoo.read_history("tiny_convpass", root=runs["root"])
    assert first.card.snapshot == {"step": 0, "test_accuracy": history["entries"][0]["test_accuracy"]}
    with pytest.raises(CheckpointError, match="has no snapshot at step 1; it has \\[0, 2\\]"):
        zoo.load("tiny_convpass", root=runs["root"], snapshot=1)
    assert zoo.snapshot_steps("tiny_deit", root=runs["root"]) == []


def test_convpass_ships_its_bypasses_and_head_and_refers_to_its_backbone(runs, tmp_path):
    entry = runs["root"] / "tiny_convpass"
    assert sorted(p.name for p in entry.iterdir()) == ["adapters.safetensors", "card.json", "history.json",
                                                       "snapshots"]
    adapters = load_file(str(entry / "adapters.safetensors"))
    assert adapters and all(k.startswith("head.") or ".adapter_" in k for k in adapters)
    whole = load_file(str(runs["tiny_convpass"] / "model.safetensors"))
    assert sum(v.numel() for v in adapters.values()) < sum(v.numel() for v in whole.values()) / 5
    # Without its backbone the entry is listed as unavailable, and loading it says which entry is missing.
    shutil.copytree(entry, tmp_path / "tiny_convpass")
    listed = {e.name: e for e in zoo.list_models(tmp_path)}["tiny_convpass"]
    assert not listed.available and listed.reason == "its backbone tiny_deit is missing"
    with pytest.raises(CheckpointError, match="tiny_convpass adapts tiny_deit, whose weights are missing"):
        zoo.load("tiny_convpass", root=tmp_path)
    # A run is shipped as bypasses only when it really adapted that entry's weights.
    shutil.copytree(runs["root"] / "tiny_convit", tmp_path / "other")
    other = {k: v + 1 if k == "blocks.0.mlp.fc1.weight" else v for k, v in load_file(
        str(runs["tiny_deit"] / "model.safetensors")).items()}
    shutil.copytree(runs["root"] / "tiny_deit", tmp_path / "other_deit")
    save_file(other, str(tmp_path / "other_deit" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="did not adapt other_deit's weights \\(blocks.0.mlp.fc1.weight"):
        zoo.write_entry(runs["tiny_convpass"], "cp", "x", root=tmp_path, backbone="other_deit")
    assert not (tmp_path / "cp").exists()


def test_recorded_dimensions_are_those_of_the_architectures():
    """zoo.dimensions answers without building (HUB's record, a card's builder arguments): each answer is what a
    skeleton of the architecture has."""
    for name in zoo.HUB:
        assert zoo.dimensions(name) == zoo.skeleton_dimensions(create_model, name), name
        cfg = get_pretrained_cfg(name)  # where the weights are: the cache is looked up without timm
        assert (zoo.HUB[name]["hub_id"], cfg.hf_hub_filename) == (cfg.hf_hub_id, None), name
    for name in zoo.SHIPPED:
        card = zoo.ModelCard.load(zoo.ASSETS / name)
        assert zoo.dimensions(name) == zoo.skeleton_dimensions(building.construct, card), name
