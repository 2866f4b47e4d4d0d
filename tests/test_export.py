"""The dial's ONNX graphs (petl_core.export): what onnxruntime computes from them equals petl_core, gates as an
input; the shipped graphs are those of the shipped weights; the vendored web runtime is what its script fetches."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from petl_core import create_model, zoo
from petl_core.catalog import BROWSER_MODELS, dial_graphs_manifest
from petl_core.dial import DialProbe, probe_set, set_gates
from petl_core.export import dial_graphs, export_dial
from petl_core.preprocess import prepare

ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "assets" / "onnxruntime-web"


class Graphs:
    """onnxruntime sessions of a folder of dial graphs, chained as the page chains them."""

    def __init__(self, folder: Path, manifest: dict) -> None:
        self.sessions = {name[:-5]: ort.InferenceSession(str(folder / name)) for name in manifest["graphs"]}
        self.blocks = manifest["gpsa_blocks"]

    def logits(self, images: np.ndarray, gates: list[np.ndarray]) -> np.ndarray:
        stream = self.sessions["stem"].run(None, {"images": images})[0]
        for k in range(self.blocks):
            stream = self.sessions[f"gpsa_{k}"].run(None, {"stream": stream, "gates": gates[k]})[0]
        return self.sessions["head"].run(None, {"stream": stream})[0]


def _convit() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("convit_tiny", img_size=32, patch_size=4, in_chans=1, num_heads=4, embed_dim=16, depth=3,
                        local_up_to_layer=2, num_classes=5).eval()


def test_an_exported_convit_computes_petl_cores_logits_for_any_gates(tmp_path):
    model, entry = _convit(), tmp_path / "entry"
    entry.mkdir()
    weights = entry / "model.safetensors"
    weights.write_bytes(b"weights")
    manifest = export_dial(model, entry / "browser", weights)
    assert manifest["graphs"] == ["stem.onnx", "gpsa_0.onnx", "gpsa_1.onnx", "head.onnx"]
    assert (manifest["heads"], manifest["tokens"], manifest["dim"], manifest["image"]) == (4, 64, 64, [1, 32, 32])
    trained = [torch.sigmoid(block.attn.gating_param).tolist() for block in model.blocks[:2]]
    assert manifest["trained_gates"] == trained
    graphs = Graphs(entry / "browser", manifest)
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 5):  # any batch size, and the gates a graph input: each setting gives that setting's logits
        images = torch.randn(batch, 1, 32, 32, generator=generator)
        for setting in ([[0.0] * 4, [1.0] * 4], [[0.3, 0.9, 0.0, 1.0], [0.5] * 4]):
            with torch.no_grad(), set_gates(model, setting):
                expected = model(images).numpy()
            got = graphs.logits(images.numpy(), [np.array(g, np.float32) for g in setting])
            np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    # the manifest names its weights: graphs of other weights are not offered
    assert dial_graphs_manifest("entry", tmp_path) == (entry / "browser", manifest)
    weights.write_bytes(b"other weights")
    assert dial_graphs_manifest("entry", tmp_path) is None
    weights.write_bytes(b"weights")
    (entry / "browser" / "dial.json").write_text("{not json")
    assert dial_graphs_manifest("entry", tmp_path) is None
    assert dial_graphs_manifest("../entry", tmp_path) is None


def test_a_model_without_gpsa_blocks_has_no_dial_graphs():
    with pytest.raises(ValueError, match="no GPSA blocks"):
        dial_graphs(create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=3))


@pytest.mark.parametrize("name", BROWSER_MODELS)
def test_the_shipped_graphs_score_the_probe_as_petl_core_does(name):
    found = dial_graphs_manifest(name)
    assert found is not None, f"{name}'s graphs are missing or stale: python -m petl_core.export"
    folder, manifest = found
    loaded = zoo.load(name)
    model, pre = loaded.model, loaded.card.preprocessing
    probe = probe_set(loaded.card.recipe["data"])
    images = prepare(probe.images, manifest["image"][0], float(pre["mean"]), float(pre["std"]), train=False,
                     base_size=pre["base_size"], pad=pre["pad"]).numpy()
    graphs, heads = Graphs(folder, manifest), manifest["heads"]
    trained = [torch.sigmoid(block.attn.gating_param.detach()).numpy() for block in model.blocks
               if hasattr(block.attn, "gating_param")]
    scorer = DialProbe(model, probe, pre)
    generator = np.random.default_rng(0)
    settings = [[None] * len(trained), [[0.0] * heads] * len(trained),
                [None, [0.0] * heads, *[generator.uniform(size=heads).tolist()] * (len(trained) - 2)]]
    for setting in settings:
        gates = [trained[k] if g is None else np.array(g, np.float32) for k, g in enumerate(setting)]
        logits = np.concatenate([graphs.logits(images[i:i + 64], gates) for i in range(0, len(images), 64)])
        with torch.no_grad(), set_gates(model, setting):
            expected = model(torch.from_numpy(images[:64])).numpy()
        np.testing.assert_allclose(logits[:64], expected, atol=1e-4, rtol=0)
        accuracy = float((logits.argmax(-1) == probe.labels.numpy()).mean())
        assert accuracy == scorer.accuracy(setting), setting  # the same 256 images, the same score


def test_the_vendored_runtime_is_the_registrys_wasm_build():
    version = (RUNTIME / "VERSION").read_text().strip()
    assert (RUNTIME / "LICENSE").read_text().startswith("MIT License")
    module = (RUNTIME / "ort.wasm.bundle.min.mjs").read_text()
    assert f'"{version}"' in module  # the module names its own version
    with gzip.open(RUNTIME / "ort-wasm-simd-threaded.wasm.gz") as wasm:
        assert wasm.read(4) == b"\0asm"
