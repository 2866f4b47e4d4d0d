"""Datasets and recorded training: real files, real optimisation on small data, resume, and DDP over 2 processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import petl_core.train as train_module
from petl_core import zoo
from petl_core.data import (
    DATASETS,
    DatasetMissingError,
    digits,
    fashion_mnist,
    fraction_subset,
    image_folder,
    k_shot_subset,
    synthetic,
    validation_split,
)
from petl_core.diagnostics import TrainingCurves, gate_gradients
from petl_core.models import GPSA
from petl_core.preprocess import prepare
from petl_core.registry import build_model
from petl_core.scenes import digits_scenes
from petl_core.train import TrainConfig, _param_groups, eval_steps, learning_rate, train

ROOT = Path(__file__).resolve().parents[1]


def test_fashion_mnist_is_the_real_dataset():
    train_set, test_set = fashion_mnist()
    assert train_set.images.shape == (60000, 1, 28, 28) and test_set.images.shape == (10000, 1, 28, 28)
    assert torch.equal(train_set.labels.bincount(), torch.full((10,), 6000))
    assert torch.equal(test_set.labels.bincount(), torch.full((10,), 1000))
    assert train_set.labels[:5].tolist() == [9, 0, 0, 3, 0]  # the published file's first labels
    assert abs(train_set.images.float().mean().item() / 255 - 0.2860) < 1e-3


def test_missing_fashion_mnist_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PETL_FASHION_MNIST", str(tmp_path))
    with pytest.raises(DatasetMissingError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist()


def test_digits_task_is_a_fixed_stratified_1000_image_split():
    train_set, test_set = digits()
    again, _ = digits()
    assert len(train_set) == 1000 and len(test_set) == 797
    assert torch.equal(train_set.labels, again.labels) and torch.equal(train_set.images, again.images)
    assert train_set.labels.bincount().min() >= 97 and train_set.images.max() == 255


def test_subsets_are_class_balanced_and_deterministic():
    labels = fashion_mnist()[0].labels
    kept = fraction_subset(labels, 0.05)
    assert torch.equal(labels[kept].bincount(), torch.full((10,), 300))
    first_of_class0 = (labels == 0).nonzero().flatten()[:300]
    assert torch.equal(kept[labels[kept] == 0], first_of_class0)  # the first images of each class, in order
    shots = k_shot_subset(labels, 4, seed=1)
    assert torch.equal(labels[shots].bincount(), torch.full((10,), 4))
    assert torch.equal(shots, k_shot_subset(labels, 4, seed=1))
    assert not torch.equal(shots, k_shot_subset(labels, 4, seed=2))
    with pytest.raises(ValueError):
        fraction_subset(labels, 0.0)


def test_image_folder_reads_any_size_and_mode(tmp_path):
    rng = np.random.default_rng(0)
    for cls, mode, size in (("cats", "RGB", (40, 30)), ("dogs", "RGBA", (17, 90)), ("dogs", "L", (64, 64))):
        folder = tmp_path / cls
        folder.mkdir(exist_ok=True)
        array = rng.integers(0, 255, (size[1], size[0], len(mode)), dtype=np.uint8).squeeze()
        Image.fromarray(array, mode).save(folder / f"{mode}.png")
    data = image_folder(tmp_path, size=24)
    assert data.images.shape == (3, 3, 24, 24) and data.labels.tolist() == [0, 1, 1]
    assert data.classes == ["cats", "dogs"]
    with pytest.raises(DatasetMissingError):
        image_folder(tmp_path / "nowhere")


def test_schedule_warms_up_then_decays():
    config = TrainConfig(method="deit", data="synthetic", lr=1e-3, warmup_fraction=0.1)
    lrs = [learning_rate(s, 100, config) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-6) and lrs[10] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11], strict=True))
    assert all(a >= b for a, b in zip(lrs[10:-1], lrs[11:], strict=True)) and lrs[-1] == pytest.approx(1e-5)
    steps = eval_steps(2808, 468, 18)
    assert steps[0] == 0 and steps[-1] == 2808 and steps[1] == 15 and len(steps) == 17


@pytest.mark.slow
def test_convit_learns_and_records_its_dynamics(tmp_path):
    config = TrainConfig(method="convit", data="synthetic", steps=60, batch=32, lr=2e-3, eval_points=6,
                         probe_size=64, gate_grad_batches=0, out=str(tmp_path / "run"))
    history = train(config, progress=False)
    first, last = history["entries"][0], history["entries"][-1]
    assert first["step"] == 0 and last["step"] == 60
    assert first["test_accuracy"] < 0.4 and last["test_accuracy"] > 0.6  # 4 classes: chance is 0.25
    assert np.array(first["gates"]).shape == (4, 9) and np.allclose(first["gates"], 0.7311, atol=1e-4)
    assert not np.allclose(last["gates"], first["gates"])  # the gates were trained
    assert np.array(last["nonlocality"]).shape == (6, 9)
    assert np.array(last["centres"]).shape == (4, 9, 2) and np.array(last["strengths"]).shape == (4, 9)
    assert all(e["train_loss"] > 0 for e in history["entries"][1:])
    saved = json.loads((tmp_path / "run" / "history.json").read_text())
    assert saved["entries"] == json.loads(json.dumps(history["entries"]))
    assert saved["environment"]["torch"] == torch.__version__ and saved["config"]["seed"] == 0
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    parameters = dict(build_model(config, num_classes=4).named_parameters())
    assert set(parameters) <= set(weights) and saved["data"]["fraction"] == 1.0
    everything = sum(p.numel() for p in parameters.values())
    assert saved["parameters"]["total"] == saved["parameters"]["trainable"] == everything  # from scratch: all train
    assert "blocks.0.attn.gating_param" in weights


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    common = dict(method="deit", data="synthetic", steps=12, batch=16, eval_points=3, probe_size=32)
    whole = train(TrainConfig(out=str(tmp_path / "whole"), **common), progress=False)
    resumed_config = TrainConfig(out=str(tmp_path / "resumed"), **common)
    partial = train(resumed_config, progress=False, until_step=7)
    assert partial["entries"][-1]["step"] < 7 and not (tmp_path / "resumed" / "model.safetensors").exists()
    resumed = train(resumed_config, progress=False)
    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e["step"] for e in resumed["entries"]] == [e["step"] for e in whole["entries"]]
    assert [e["test_accuracy"] for e in resumed["entries"]] == [e["test_accuracy"] for e in whole["entries"]]
    assert [e["lr_sum"] for e in resumed["entries"]] == [e["lr_sum"] for e in whole["entries"]]
    with pytest.raises(ValueError, match="another configuration"):
        train(TrainConfig(out=str(tmp_path / "resumed"), **{**common, "lr": 5e-3}), progress=False)


def test_a_run_killed_between_evaluation_points_resumes_from_its_timed_checkpoint(tmp_path, monkeypatch):
    common = dict(method="deit", data="synthetic", steps=12, batch=16, eval_points=1, probe_size=32)
    whole = train(TrainConfig(out=str(tmp_path / "whole"), **common), progress=False)
    monkeypatch.setattr(train_module, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every step
    calls, cross_entropy = [], train_module.F.cross_entropy

    def dies_at_step_9(*args, **kwargs):  # the machine goes away in the middle of step 9 (points: 0, 6, 12)
        calls.append(1)
        if len(calls) == 9 + 1:
            raise KeyboardInterrupt
        return cross_entropy(*args, **kwargs)

    monkeypatch.setattr(train_module.F, "cross_entropy", dies_at_step_9)
    config = TrainConfig(out=str(tmp_path / "killed"), **common)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    assert json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())["step"] == 9
    monkeypatch.setattr(train_module.F, "cross_entropy", cross_entropy)
    resumed = train(config, progress=False)
    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e["lr_sum"] for e in resumed["entries"]] == [e["lr_sum"] for e in whole["entries"]]


def test_adaptation_methods_train_only_what_they_should(tmp_path):
    backbone = tmp_path / "deit"
    train(TrainConfig(method="deit", data="synthetic", steps=4, batch=16, eval_points=1, probe_size=16,
                      out=str(backbone)), progress=False)
    counts = {}
    for method in ("convpass", "convpass_attn", "linear", "finetune"):
        history = train(TrainConfig(method=method, data="digits", backbone=str(backbone / "model.safetensors"),
                                    steps=3, batch=16, eval_points=1, probe_size=16, out=str(tmp_path / method)),
                        progress=False)
        counts[method] = history["parameters"]["trainable"]
        assert history["config"]["weight_decay"] == 1e-4 and history["config"]["label_smoothing"] == 0.0
        # a frozen backbone runs as in evaluation: no drop path (only a fine-tuned one keeps it)
        model = build_model(TrainConfig(method=method, data="digits", backbone=str(backbone / "model.safetensors")),
                            10)
        rates = {getattr(m, "drop_prob", 0.0) for m in model.modules() if type(m).__name__ == "DropPath"}
        assert history["config"]["drop_path"] == (0.1 if method == "finetune" else 0.0)
        assert (max(rates, default=0.0) > 0) == (method == "finetune"), (method, rates)
    head = 144 * 10 + 10
    per_bypass = 144 * 8 + 8 + 9 * 64 + 8 + 8 * 144 + 144
    assert counts["linear"] == head
    assert counts["convpass_attn"] == head + 6 * per_bypass
    assert counts["convpass"] == head + 12 * per_bypass
    assert counts["finetune"] > 1_000_000
    with pytest.raises(ValueError, match="--backbone"):
        TrainConfig(method="convpass", data="digits")


@pytest.mark.slow
def test_torchrun_two_cpu_processes_run_the_same_recipe(tmp_path):
    args = ["--method", "deit", "--data", "synthetic", "--steps", "6", "--batch", "16", "--eval-points", "2",
            "--probe-size", "16", "--drop-path", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "petl_core", "train", *args, "--out", str(tmp_path / "ddp")],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "petl_core", "train", *args, "--out", str(tmp_path / "one")],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    history = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert history["environment"]["processes"] == 2 and history["batch_per_process"] == 8
    a = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "model.safetensors"))
    # The global batch is split over the ranks and the gradients averaged: the same optimisation, up to the
    # order of float additions (which Adam's normalisation amplifies on near-zero gradients).
    torch.manual_seed(0)
    init = build_model(TrainConfig(method="deit", data="synthetic", drop_path=0.0), num_classes=4).state_dict()
    moved = sum((b[k] - init[k]).square().sum() for k in b).sqrt()
    apart = sum((a[k] - b[k]).square().sum() for k in b).sqrt()
    assert moved > 0.05 and apart < 0.01 * moved, (moved, apart)


def test_synthetic_set_is_small_and_labelled():
    data = synthetic(num_images=40, num_classes=4)
    assert data.images.shape == (40, 1, 16, 16) and data.labels.bincount().tolist() == [10, 10, 10, 10]


def test_lr_sum_is_the_schedule_summed_per_group_and_the_gpsa_variant_outruns_the_base(tmp_path):
    common = dict(method="convit", data="synthetic", steps=12, batch=8, eval_points=3, probe_size=16,
                  gate_grad_batches=0)
    control = train(TrainConfig(out=str(tmp_path / "control"), **common), progress=False)
    config = TrainConfig(out=str(tmp_path / "variant"), gpsa_lr_scale=25.0, **common)
    variant = train(config, progress=False)
    assert set(control["entries"][-1]["lr_sum"]) == {"decay", "no_decay"}
    for entry in variant["entries"]:
        schedule = sum(learning_rate(s, 12, config) for s in range(entry["step"]))
        assert entry["lr_sum"]["decay"] == pytest.approx(schedule, rel=1e-9, abs=1e-12)
        assert entry["lr_sum"]["no_decay"] == pytest.approx(schedule, rel=1e-9, abs=1e-12)
        assert entry["lr_sum"]["gpsa"] == pytest.approx(25 * schedule, rel=1e-9, abs=1e-12)
    last = variant["entries"][-1]
    assert last["lr_sum"]["gpsa"] > 20 * last["lr_sum"]["decay"] > 0
    assert control["entries"][-1]["lr_sum"]["decay"] == pytest.approx(last["lr_sum"]["decay"])
    # The variant's group: the gates and positional projections of the 4 GPSA blocks, no weight decay; the
    # control keeps them in the paper's groups.
    model = build_model(config, num_classes=4)
    groups = {g["name"]: g for g in _param_groups(model, 0.05, 25.0)}
    gpsa = [b.attn for b in model.blocks if isinstance(b.attn, GPSA)]
    expected = {id(p) for a in gpsa for p in (a.gating_param, a.pos_proj.weight, a.pos_proj.bias)}
    assert {id(p) for p in groups["gpsa"]["params"]} == expected and len(expected) == 12
    assert groups["gpsa"]["weight_decay"] == 0.0 and groups["gpsa"]["lr_scale"] == 25.0
    assert [g["name"] for g in _param_groups(model, 0.05)] == ["decay", "no_decay"]
    # The gates really took the larger steps: each moved further from its initial λ = 1 than in the control.
    moved = {name: (load_file(str(tmp_path / name / "model.safetensors"))["blocks.0.attn.gating_param"] - 1).abs()
             for name in ("control", "variant")}
    assert (moved["variant"] > moved["control"]).all()
    # The shipped 2h recipe (1,872 steps, lr 1e-3) gives a gate Σlr of only about 0.94; ×25 reaches 20.
    shipped = TrainConfig(method="convit", lr=1e-3, gpsa_lr_scale=25.0)
    reach = sum(learning_rate(s, 1872, shipped) for s in range(1872))
    assert 0.9 < reach < 1.0 and 25 * reach > 20
    with pytest.raises(ValueError, match="GPSA"):
        TrainConfig(method="deit", gpsa_lr_scale=10.0)


def test_the_ablation_keeps_the_decay_on_the_positional_weights_alone():
    """Issue 31's ablation: the variant's 50× rate with pos_proj's weights decayed as in the paper's recipe."""
    config = TrainConfig(method="convit", data="synthetic", gpsa_lr_scale=50.0, gpsa_weight_decay=True)
    model = build_model(config, num_classes=4)
    groups = {g["name"]: g for g in _param_groups(model, 0.05, 50.0, gpsa_weight_decay=True)}
    gpsa = [b.attn for b in model.blocks if isinstance(b.attn, GPSA)]
    assert {id(p) for p in groups["gpsa_decay"]["params"]} == {id(a.pos_proj.weight) for a in gpsa}
    assert {id(p) for p in groups["gpsa"]["params"]} == {id(p) for a in gpsa for p in (a.gating_param,
                                                                                        a.pos_proj.bias)}
    assert groups["gpsa_decay"]["weight_decay"] == 0.05 and groups["gpsa_decay"]["lr_scale"] == 50.0
    assert groups["gpsa"]["weight_decay"] == 0.0
    together = [p for g in groups.values() for p in g["params"]]
    assert len(together) == len({id(p) for p in together}) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="gpsa_lr_scale"):
        TrainConfig(method="convit", gpsa_weight_decay=True)


def test_param_groups_keep_their_parameters_and_order_so_old_checkpoints_resume():
    # ConViT at depth 6: blocks 0-3 GPSA, 4-5 MHSA. Written out as the hand-made split had them (optimiser state
    # is matched to groups by order and size, so a checkpoint from before must find the same lists).
    gpsa_own = ["attn.gating_param", "attn.pos_proj.weight", "attn.pos_proj.bias"]
    decay = ["patch_embed.proj.weight"]
    no_decay = ["cls_token", "pos_embed", "patch_embed.proj.bias"]
    for i in range(6):
        gpsa = i < 4
        decay += [f"blocks.{i}.{n}" for n in (["attn.qk.weight", "attn.v.weight", "attn.proj.weight",
                                                "attn.pos_proj.weight"] if gpsa else ["attn.qkv.weight",
                                                                                      "attn.proj.weight"])
                  + ["mlp.fc1.weight", "mlp.fc2.weight"]]
        no_decay += [f"blocks.{i}.{n}" for n in ["norm1.weight", "norm1.bias"]
                     + (["attn.gating_param", "attn.proj.bias", "attn.pos_proj.bias"] if gpsa else ["attn.proj.bias"])
                     + ["norm2.weight", "norm2.bias", "mlp.fc1.bias", "mlp.fc2.bias"]]
    decay += ["head.weight"]
    no_decay += ["norm.weight", "norm.bias", "head.bias"]
    own = [f"blocks.{i}.{n}" for i in range(4) for n in gpsa_own]
    model = build_model(TrainConfig(method="convit", data="synthetic", head_dim=4), num_classes=4)
    names = {id(p): n for n, p in model.named_parameters()}
    params = dict(model.named_parameters())

    def described(groups: list[dict]) -> list[tuple]:
        return [(g["name"], [names[id(p)] for p in g["params"]], g["weight_decay"], g["lr_scale"]) for g in groups]

    assert described(_param_groups(model, 0.05)) == [("decay", decay, 0.05, 1.0), ("no_decay", no_decay, 0.0, 1.0)]
    # the split does not depend on the decay's value (timm's own would put everything in one group at 0)
    assert described(_param_groups(model, 0.0)) == [("decay", decay, 0.0, 1.0), ("no_decay", no_decay, 0.0, 1.0)]
    variant = [n for n in no_decay if n not in own]
    assert described(_param_groups(model, 0.05, 25.0)) == [
        ("decay", [n for n in decay if n not in own], 0.05, 1.0), ("no_decay", variant, 0.0, 1.0),
        ("gpsa", own, 0.0, 25.0)]
    # An optimiser state saved under the hand-made groups loads onto the same parameters
    old = torch.optim.AdamW([{"params": [params[n] for n in group]} for group in (decay, no_decay)], lr=1e-3)
    model(torch.randn(2, 1, 32, 32)).sum().backward()
    old.step()
    new = torch.optim.AdamW(_param_groups(model, 0.05), lr=1e-3)
    new.load_state_dict(old.state_dict())
    assert all(torch.equal(new.state[p]["exp_avg"], old.state[p]["exp_avg"]) for p in model.parameters())


def test_gate_gradient_diagnostic_is_recorded_and_leaves_the_run_unchanged(tmp_path):
    common = dict(method="convit", data="synthetic", steps=6, batch=16, eval_points=1, probe_size=16)
    with_diag = train(TrainConfig(out=str(tmp_path / "with"), gate_grad_batches=3, **common), progress=False)
    without = train(TrainConfig(out=str(tmp_path / "without"), gate_grad_batches=0, **common), progress=False)
    a = load_file(str(tmp_path / "with" / "model.safetensors"))
    b = load_file(str(tmp_path / "without" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # no step, no RNG drawn from the run's streams
    assert "gate_grad" not in without
    diag = with_diag["gate_grad"]
    assert diag["init"]["step"] == 0 and diag["end"]["step"] == 6 and diag["init"]["batches"] == 3
    for moment in ("init", "end"):
        mean, std = np.array(diag[moment]["mean"]), np.array(diag[moment]["std"])
        assert mean.shape == (4, 9) and std.shape == (4, 9)  # GPSA blocks × heads
        assert np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    assert not np.allclose(diag["init"]["mean"], diag["end"]["mean"])
    assert json.loads((tmp_path / "with" / "history.json").read_text())["gate_grad"] == diag


def test_gate_gradients_are_the_loss_gradient_of_each_gate():
    config = TrainConfig(method="convit", data="synthetic", drop_path=0.0)
    torch.manual_seed(0)
    model = build_model(config, num_classes=4)
    data = synthetic(num_images=32)
    x, y = prepare(data.images, 1, 0.25, 0.25, train=False), data.labels
    batches = [(x[:16], y[:16]), (x[16:], y[16:])]
    diag = gate_gradients(model, batches, label_smoothing=0.1)
    manual = []
    for xb, yb in batches:
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb, label_smoothing=0.1).backward()
        manual.append(torch.stack([b.attn.gating_param.grad.clone() for b in model.blocks[:4]]))
    manual = torch.stack(manual).double()
    assert np.allclose(diag["mean"], manual.mean(0).numpy(), atol=1e-7)
    assert np.allclose(diag["std"], manual.std(0).numpy(), atol=1e-7) and diag["batches"] == 2


@pytest.mark.slow
def test_scenes_train_at_their_own_size_and_ship_as_zoo_entries(tmp_path, monkeypatch):
    train_set, test_set = digits_scenes()
    spec = replace(DATASETS["digits_scenes"], load=lambda root, seed: (train_set.subset(range(64)),
                                                                       test_set.subset(range(32))))
    monkeypatch.setitem(DATASETS, "small_scenes", spec)  # the real scenes, few of them: a fast evaluation
    history = train(TrainConfig(method="convit", data="small_scenes", steps=2, batch=16, eval_points=1,
                                probe_size=16, gate_grad_batches=1, snapshots=True, out=str(tmp_path / "scenes")),
                    progress=False)
    assert history["augmentation"] == {"shift": 0, "hflip": False}
    assert history["data"]["input_size"] == 48 and history["data"]["pad"] == 0
    assert np.array(history["entries"][-1]["nonlocality"]).shape == (6, 9)
    weights = load_file(str(tmp_path / "scenes" / "model.safetensors"))
    assert weights["pos_embed"].shape == (1, 144, 144)  # a 12×12 patch grid of 144 channels
    assert build_model(TrainConfig(method="deit", data="digits"), 10).pos_embed.shape == (1, 65, 144)  # 8×8 + cls
    # shipped as a zoo entry, the model sees a scene exactly as it was evaluated, at 48 pixels
    entry = zoo.write_entry(tmp_path / "scenes", "scenes_convit", "ConViT on scenes", root=tmp_path / "assets")
    loaded = zoo.load("scenes_convit", root=tmp_path / "assets")
    assert loaded.card.preprocessing["base_size"] == 48 and loaded.card.preprocessing["pad"] == 0
    assert loaded.card.architecture["kwargs"]["img_size"] == 48 and entry.name == "scenes_convit"
    assert loaded.card.augmentation == {"shift": 0, "hflip": False}
    # trained from scratch, a snapshot holds every parameter
    assert zoo.snapshot_steps("scenes_convit", root=tmp_path / "assets") == [e["step"] for e in history["entries"]]
    snapshot = load_file(str(entry / "snapshots" / "step000000.safetensors"))
    assert snapshot.keys() == dict(loaded.model.named_parameters()).keys()
    test = test_set.subset(range(32))
    norm = (history["data"]["normalisation"]["mean"], history["data"]["normalisation"]["std"])
    expected = prepare(test.images, 1, *norm, train=False, base_size=48, pad=0)
    seen = torch.stack([loaded.preprocess(Image.fromarray(test.images[i, 0].numpy())) for i in range(32)])
    assert torch.equal(seen, expected)
    with torch.no_grad():
        accuracy = (loaded.model(seen).argmax(-1) == test.labels).float().mean().item()
    assert accuracy == pytest.approx(loaded.card.accuracy["test"])


def test_narrower_models_are_recorded_and_intermediate_points_may_score_part_of_the_test_set(tmp_path):
    history = train(TrainConfig(method="convit", data="synthetic", steps=4, batch=16, eval_points=2, eval_images=40,
                                probe_size=16, gate_grad_batches=0, head_dim=8, out=str(tmp_path / "narrow")),
                    progress=False)
    assert history["architecture"] == {"timm_name": "convit_tiny", "kwargs": {
        "img_size": 32, "patch_size": 4, "in_chans": 1, "num_heads": 9, "embed_dim": 8, "depth": 6,
        "local_up_to_layer": 4, "num_classes": 4}}
    weights = load_file(str(tmp_path / "narrow" / "model.safetensors"))
    assert weights["pos_embed"].shape == (1, 64, 72)  # 9 heads × 8 channels
    # step 0 and the last step score all 128 test images, the points between the first 40 only
    assert [(e["step"], e["test_images"]) for e in history["entries"]] == [(0, 128), (2, 40), (4, 128)]
    model = build_model(TrainConfig(method="convit", data="synthetic", head_dim=8), 4)
    model.load_state_dict(weights)
    test = synthetic(num_images=128, seed=1)
    norm = history["data"]["normalisation"]
    with torch.no_grad():
        logits = model.eval()(prepare(test.images, 1, norm["mean"], norm["std"], train=False))
    assert (logits.argmax(-1) == test.labels).float().mean().item() == history["entries"][-1]["test_accuracy"]
    # An adapted model takes its width from the backbone file, whatever head_dim says.
    deit = tmp_path / "deit"
    train(TrainConfig(method="deit", data="synthetic", steps=1, batch=16, eval_points=1, probe_size=16, head_dim=8,
                      out=str(deit)), progress=False)
    linear = build_model(TrainConfig(method="linear", data="digits", backbone=str(deit / "model.safetensors")), 10)
    assert linear.embed_dim == 72 and linear.head.out_features == 10
    card = zoo.card_from_history(json.loads((deit / "history.json").read_text()), "narrow_deit", "DeiT, 8 per head")
    assert card.architecture["kwargs"]["embed_dim"] == 72


def test_larger_patches_make_a_coarser_grid_and_an_adapted_model_keeps_its_backbones(tmp_path):
    """TrainConfig.patch_size sizes the patches of a model trained from scratch (8: a 4×4 grid of the 32×32 input,
    the sample stage's cheaper step); a model adapted from it takes its patches from the backbone file."""
    deit = tmp_path / "deit_p8"
    history = train(TrainConfig(method="deit", data="synthetic", steps=1, batch=16, eval_points=1, probe_size=16,
                                head_dim=8, patch_size=8, out=str(deit)), progress=False)
    assert history["architecture"]["kwargs"]["patch_size"] == 8 and history["config"]["patch_size"] == 8
    assert load_file(str(deit / "model.safetensors"))["pos_embed"].shape == (1, 17, 72)  # 4×4 patches + class
    convpass = build_model(TrainConfig(method="convpass", data="digits", backbone=str(deit / "model.safetensors")), 10)
    assert convpass.patch_embed.grid_size == (4, 4)
    assert build_model(TrainConfig(method="convit", data="synthetic", patch_size=8), 4).patch_embed.grid_size == (4, 4)


def test_a_validation_split_is_held_out_class_by_class_and_scored_at_every_point(tmp_path):
    labels = digits()[0].labels
    kept, held = validation_split(labels, 200, seed=0)
    assert len(held) == 200 and len(kept) == 800 and not set(kept.tolist()) & set(held.tolist())
    assert torch.equal(held, validation_split(labels, 200, seed=0)[1])
    assert not torch.equal(held, validation_split(labels, 200, seed=1)[1])
    per_class = torch.bincount(labels[held], minlength=10)
    assert torch.all((per_class - 200 * torch.bincount(labels, minlength=10) / len(labels)).abs() <= 1)
    with pytest.raises(ValueError, match="needs 0 < count < 1000"):
        validation_split(labels, 1000)
    history = train(TrainConfig(method="deit", data="synthetic", steps=4, batch=16, eval_points=1, probe_size=16,
                                val_images=64, out=str(tmp_path / "val")), progress=False)
    assert history["data"]["train_images"] == 256 - 64 and history["data"]["val_images"] == 64
    assert all(0 <= e["val_accuracy"] <= 1 for e in history["entries"])


def test_training_curves_read_the_shipped_histories():
    convit, deit = (zoo.read_history(name) for name in ("convit_scenes_gpsa50", "deit_scenes"))
    curves, entries = TrainingCurves.of(convit), convit["entries"]
    assert curves.steps.tolist() == [e["step"] for e in entries] and curves.epochs[-1] == entries[-1]["epoch"]
    assert curves.gates.shape == (len(entries), 4, 9) and curves.nonlocality.shape == (len(entries), 6)
    assert curves.gates[-1, 2, 5] == entries[-1]["gates"][2][5]
    assert curves.nonlocality[3, 2] == pytest.approx(np.mean(entries[3]["nonlocality"][2]))
    assert TrainingCurves.of(deit).gates is None and TrainingCurves.of(deit).nonlocality.shape[1] == 6
