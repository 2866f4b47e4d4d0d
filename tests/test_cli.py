"""`python -m petl_core analyze`: what it writes, that its numbers are petl_core's, and its bad-input messages."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from petl_core import add_convpass, create_model, metrics, save_convpass, trace
from petl_core.__main__ import main
from petl_core.images import image_transform

ROOT = Path(__file__).resolve().parents[1]
CONVIT_ARGS = ["--model-arg", "img_size=64", "--model-arg", "num_classes=10"]
CONVIT_KWARGS = {"img_size": 64, "num_classes": 10}


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("img") / "photo.jpg"
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def convit_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("convit_tiny", **CONVIT_KWARGS)
    with torch.no_grad():  # move the gates off their init so the JSON shows real, distinct values
        for block in model.blocks[:10]:
            block.attn.gating_param.normal_()
    path = tmp_path_factory.mktemp("ckpt") / "convit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "petl_core", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_analyze_convit_writes_figures_and_petl_core_numbers(photo, convit_checkpoint, tmp_path):
    out = tmp_path / "out"
    result = _run("analyze", str(photo), "--model", "convit_tiny", *CONVIT_ARGS,
                  "--checkpoint", str(convit_checkpoint), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "top-1:" in result.stdout
    report = json.loads((out / "analysis.json").read_text())
    files = {p.name for p in out.iterdir()}
    expected_files = {"analysis.json", "input.png", "gates.png"} | {f"attention_block{i:02d}.png" for i in range(12)}
    assert expected_files <= files
    assert set(report["figures"]) | {"analysis.json"} == files
    for name in expected_files - {"analysis.json", "input.png"}:
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 100
    with Image.open(out / "input.png") as im:
        assert im.size == (64, 64)  # exactly what the model saw

    # The same numbers, computed directly with petl_core on the same weights and preprocessing.
    model = create_model("convit_tiny", **CONVIT_KWARGS).eval()
    from safetensors.torch import load_file
    model.load_state_dict(load_file(str(convit_checkpoint)))
    with Image.open(photo) as im:
        x = image_transform(model)(im.convert("RGB")).unsqueeze(0)
    t = trace(model, x)
    probabilities = t.logits.softmax(-1)[0]
    top = probabilities.topk(5)
    assert [e["index"] for e in report["top5"]] == top.indices.tolist()
    assert [e["probability"] for e in report["top5"]] == pytest.approx(top.values.tolist(), abs=1e-6)
    assert report["gates"]["blocks"] == list(range(10))
    assert np.allclose(report["gates"]["sigma_lambda"], t.gate_matrix.numpy(), atol=1e-6)
    assert np.std(report["gates"]["sigma_lambda"]) > 0.05
    per_head = np.array(report["nonlocality"]["per_head"])
    assert per_head.shape == (12, 4)
    for i, attention in enumerate(t.attention):
        want = metrics.nonlocality(attention, t.grid, t.num_prefix[i])[0].numpy()
        assert np.allclose(per_head[i], want, atol=1e-5)
    assert report["nonlocality"]["per_layer"] == pytest.approx(per_head.mean(1).tolist())
    assert report["weights"] == "checkpoint" and report["input_size"] == [3, 64, 64]
    assert report["query"] == "2,2" and report["grid"] == [4, 4]


def test_analyze_convpass_writes_bypass_maps(photo, tmp_path):
    torch.manual_seed(0)
    kwargs = {"img_size": 64, "depth": 3, "num_classes": 5}
    backbone = create_model("deit_tiny_patch16_224", **kwargs)
    backbone_file = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(backbone_file))
    add_convpass(backbone, dim=4, where="both")
    with torch.no_grad():
        for name, p in backbone.named_parameters():
            if "adapter_up" in name:
                p.normal_(std=0.05)
    adapter_file = tmp_path / "adapter.safetensors"
    save_convpass(backbone, adapter_file)
    out = tmp_path / "out"
    args = [f"--model-arg={k}={v}" for k, v in kwargs.items()]
    result = _run("analyze", str(photo), "--model", "deit_tiny_patch16_224", *args, "--checkpoint",
                  str(backbone_file), "--adapter", str(adapter_file), "--query", "cls", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "analysis.json").read_text())
    assert "gates.png" not in report["figures"]
    assert "bypass_maps.png" in report["figures"]
    assert {f"bypass_conv_block{i:02d}_{b}.png" for i in range(3) for b in ("attn", "mlp")} <= set(report["figures"])
    assert set(report["bypass_mean_per_block"]) == {"0", "1", "2"}
    assert all(v["attn_ratio"] > 0 for v in report["bypass_mean_per_block"].values())
    assert report["query"] == "cls" and report["query_skipped_blocks"] == []


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_bad_inputs_each_get_one_clear_line(photo, convit_checkpoint, tmp_path, capsys):
    base = ["--model", "convit_tiny", *CONVIT_ARGS, "--out", str(tmp_path / "o")]
    text_file = tmp_path / "notes.png"
    text_file.write_text("this is not a picture")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo.read_bytes()[:400])
    pickled = tmp_path / "evil.pth"
    with open(pickled, "wb") as f:
        pickle.dump({"weights": Path("/etc/passwd")}, f)  # an arbitrary object, not tensors
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    nan = tmp_path / "nan.safetensors"
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v.contiguous()
               for k, v in create_model("convit_tiny", **dict(CONVIT_KWARGS)).state_dict().items()}, str(nan))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00garbage")
    deit_file = tmp_path / "deit.safetensors"
    save_file({k: v.contiguous() for k, v in create_model("deit_tiny_patch16_224", img_size=64).state_dict().items()},
              str(deit_file))
    cases = [
        (["analyze", str(tmp_path / "missing.jpg"), *base], "image file not found"),
        (["analyze", str(text_file), *base], "not an image file"),
        (["analyze", str(truncated), *base], "truncated or corrupt"),
        (["analyze", str(photo), *base, "--checkpoint", str(tmp_path / "no.safetensors")], "weights file not found"),
        (["analyze", str(photo), *base, "--checkpoint", str(pickled)], "evil.pth is not a PyTorch weights archive"),
        (["analyze", str(photo), *base, "--checkpoint", str(empty)], "empty.pt is empty"),
        (["analyze", str(photo), *base, "--checkpoint", str(nan)], "nan.safetensors holds NaN or infinite values"),
        (["analyze", str(photo), *base, "--checkpoint", str(broken)], "not a readable safetensors file"),
        (["analyze", str(photo), *base, "--checkpoint", str(deit_file)], "does not fit this architecture"),
        (["analyze", str(photo), "--model", "convit_nano", "--out", str(tmp_path)], "unknown model 'convit_nano'"),
        (["analyze", str(photo), *base, "--query", "9,9"], "outside the 4×4 patch grid"),
        (["analyze", str(photo), *base, "--model-arg", "bogus_arg=3"], "bad model argument"),
        (["analyze", str(photo), *base, "--adapter", str(convit_checkpoint)], "adapter convit.safetensors"),
    ]
    if not torch.cuda.is_available():
        cases.append((["analyze", str(photo), *base, "--device", "cuda"], "no CUDA device"))
    for argv, message in cases:
        assert main(argv) == 1, argv
        line = _error_line(capsys)
        assert message in line, (argv, line)


def test_huge_image_is_refused_unread(tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (8000, 6000)).save(bomb)  # 48 MP in a few KB
    assert main(["analyze", str(bomb), "--model", "convit_tiny", "--out", str(tmp_path)]) == 1
    assert "limit is 40,000,000 pixels" in _error_line(capsys)


def test_offline_hub_is_one_line_and_nonzero_exit(photo, tmp_path):
    result = _run("analyze", str(photo), "--model", "convit_tiny", "--pretrained", "--out", str(tmp_path),
                  env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: could not download pretrained weights for 'convit_tiny'")
    assert "Traceback" not in result.stderr


def test_analyze_without_a_model_uses_the_default_scenes_model_on_a_test_scene(tmp_path):
    from petl_core import zoo
    from petl_core.analysis import analyze
    from petl_core.images import load_image

    scene = sorted((ROOT / "assets" / "examples").glob("scene_*.png"))[0]
    assert main(["analyze", str(scene), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "analysis.json").read_text())
    card = zoo.ModelCard.load(zoo.ASSETS / zoo.DEFAULT_MODEL)
    side = card.architecture["kwargs"]["img_size"]
    assert report["weights"] == "shipped" and report["input_size"] == [1, side, side] and report["grid"] == [12, 12]
    loaded = zoo.load(zoo.DEFAULT_MODEL)
    direct = analyze(loaded.model, loaded.preprocess(load_image(scene)).unsqueeze(0)).summary()["top5"]
    assert [e["label"] for e in report["top5"]] == [e["label"] for e in direct]


def test_analyze_a_shipped_model(tmp_path):
    out = tmp_path / "out"
    result = _run("analyze", str(ROOT / "assets" / "examples" / "chelsea.png"), "--model", "convit_fmnist",
                  "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "random weights" not in result.stderr
    report = json.loads((out / "analysis.json").read_text())
    from petl_core.data import FASHION_MNIST_CLASSES
    assert report["weights"] == "shipped" and report["input_size"] == [1, 32, 32] and report["grid"] == [8, 8]
    assert {e["label"] for e in report["top5"]} <= set(FASHION_MNIST_CLASSES)
    assert np.array(report["gates"]["sigma_lambda"]).shape == (4, 9)
    assert np.array(report["nonlocality"]["per_head"]).shape == (6, 9)
    with Image.open(out / "input.png") as im:
        assert im.size == (32, 32)
    assert main(["analyze", str(ROOT / "assets" / "examples" / "chelsea.png"), "--model", "convit_fmnist",
                 "--checkpoint", str(tmp_path / "x.safetensors"), "--out", str(out)]) == 1


def test_a_shipped_architecture_with_a_weights_file(tmp_path, capsys):
    chelsea, models = str(ROOT / "assets" / "examples" / "chelsea.png"), ROOT / "assets" / "models"
    out = tmp_path / "own"
    assert main(["analyze", chelsea, "--model", "convit_fmnist", "--checkpoint",
                 str(models / "convit_fmnist" / "model.safetensors"), "--out", str(out)]) == 0
    report = json.loads((out / "analysis.json").read_text())
    shipped = tmp_path / "shipped"
    assert main(["analyze", chelsea, "--model", "convit_fmnist", "--out", str(shipped)]) == 0
    assert report["weights"] == "local"
    assert report["top5"] == json.loads((shipped / "analysis.json").read_text())["top5"]
    capsys.readouterr()
    assert main(["analyze", chelsea, "--model", "convit_fmnist", "--checkpoint",
                 str(models / "deit_fmnist" / "model.safetensors"), "--out", str(out)]) == 1
    assert "does not fit this architecture" in _error_line(capsys)


def test_train_help_shows_each_options_docstring_and_real_choices(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "--method {convit,deit,convpass,convpass_attn,linear,finetune}" in shown
    assert "Weights to adapt (needed by convpass" in shown  # TrainConfig.backbone's attribute docstring
    assert "--snapshots, --no-snapshots" in shown
    with pytest.raises(SystemExit) as refused:
        main(["train", "--method", "resnet"])
    assert refused.value.code == 2 and "invalid choice: 'resnet'" in capsys.readouterr().err
