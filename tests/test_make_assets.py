"""The asset suite end to end on the synthetic set: one pool, backbone dependencies, shipping, results, resuming."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from experiments.make_assets import BUDGETS, Budget, Suite, main, run_all, run_suite, summarise_petl
from petl_core import findings, zoo

pytestmark = pytest.mark.slow

TINY = Budget("tiny", shipped_epochs=1, shipped_eval_points=1, sample_steps=2, sample_eval_points=1, seeds=(0,),
              petl_epochs=1, sample_fractions=(0.5,), petl_shots=(1, None), gate_grad_batches=2,
              petl_lr_grid=(("linear", (1e-2, 1e-3)),), petl_val_images=32)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    suite = Suite(TINY, root / "runs", root / "assets", source="synthetic", target="synthetic")
    return suite, run_suite(suite, jobs=2)


def test_every_run_trains_once_and_the_shipped_convpass_is_the_petl_one(suite):
    suite, record = suite
    # 3 shipped (ConViT, DeiT, Convpass) + 2 sample + 4 methods × 2 shot settings, the linear probe at 1,000 images
    # once per learning rate of its grid, less the shared Convpass run.
    assert record["runs"] == record["trained_now"] == 3 + 2 + 8 + 1 - 1
    convpass_full = next(c for c in suite.petl() if c.method == "convpass" and c.shots is None)
    assert convpass_full == suite.shipped()[2]
    timings = json.loads((suite.assets / "results" / "tiny" / "timings.json").read_text())
    assert len(timings) == record["runs"] and all(t["run_wall_time_s"] > 0 for t in timings)


def test_a_run_listed_before_its_backbone_waits_for_it(tmp_path):
    suite = Suite(TINY, tmp_path / "runs", tmp_path / "assets", source="synthetic", target="synthetic")
    linear = next(c for c in suite.petl() if c.method == "linear" and c.shots == 1)
    deit = suite.shipped()[1]
    records = run_all([linear, deit], jobs=2)  # two free workers, yet the linear probe must not start first
    assert [r["run"] for r in records] == ["deit", "linear_1shot_s0"]


def test_shipped_models_load_from_the_written_assets(suite):
    suite, _ = suite
    names = {e.name: e for e in zoo.list_models(root=suite.assets / "models")}
    for name in ("convit_fmnist", "deit_fmnist", "convpass_digits"):
        assert names[name].available
        loaded = zoo.load(name, root=suite.assets / "models")
        assert loaded.card.accuracy["test_images"] == 128
    assert zoo.load("convpass_digits", root=suite.assets / "models").card.backbone == "deit_fmnist"


def test_results_list_every_run_with_its_budget(suite):
    suite, _ = suite
    sample = findings.load_results("sample_efficiency", "tiny", suite.assets / "results")
    petl = findings.load_results("petl", "tiny", suite.assets / "results")
    assert findings.budgets(suite.assets / "results") == ["tiny"]
    assert sample["budget"] == petl["budget"] == "tiny"
    convit = findings.load_results("histories/convit", "tiny", suite.assets / "results")
    assert convit == zoo.read_history("convit_fmnist", root=suite.assets / "models")
    assert {(r["method"], r["fraction"]) for r in sample["runs"]} == {("convit", 0.5), ("deit", 0.5)}
    assert all(r["steps"] == 2 for r in sample["runs"])
    assert {(r["method"], r["shots"]) for r in petl["runs"]} == {
        (m, s) for m in ("convpass", "convpass_attn", "linear", "finetune") for s in (1, None)}
    searched = [r for r in petl["runs"] if r["method"] == "linear" and r["shots"] is None]
    assert sorted(r["lr"] for r in searched) == [1e-3, 1e-2] and all(r["val_images"] == 32 for r in searched)
    assert all(r["train_images"] == 256 - 32 for r in searched)  # they train on what validation leaves
    chosen = [r for r in searched if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["last_epoch_val_accuracy"] == max(
        r["last_epoch_val_accuracy"] for r in searched)
    assert findings.petl_summary(petl)["accuracy"]["linear"]["full"]["runs"] == [100 * chosen[0]["last_epoch_accuracy"]]
    trainable = {r["method"]: r["trainable_parameters"] for r in petl["runs"] if r["shots"] is None}
    assert trainable["linear"] < trainable["convpass_attn"] < trainable["convpass"] < trainable["finetune"]


def test_a_second_call_trains_nothing_and_results_only_ships_nothing(suite):
    suite, _ = suite
    again = run_suite(suite, jobs=2)
    assert again["trained_now"] == 0 and again["runs"] == 13
    shipped = suite.assets / "models" / "deit_fmnist" / "model.safetensors"
    weights = shipped.read_bytes()
    shipped.unlink()
    run_suite(suite, jobs=2, train=False)
    assert not shipped.exists() and (suite.assets / "results" / "tiny" / "petl.json").is_file()
    shipped.write_bytes(weights)  # the module's other tests use it


def test_a_fresh_clone_keeps_the_recorded_runs_and_trains_only_new_seeds(suite, tmp_path):
    """A clone has assets/ but no runs/: the rows of the results files stand for the runs an earlier checkout
    finished (not trained again, not dropped), and the petl stage adapts the shipped DeiT entry."""
    suite, _ = suite
    clone = replace(suite, budget=replace(TINY, seeds=(0, 1)), runs=tmp_path / "runs", assets=tmp_path / "assets")
    shutil.copytree(suite.assets, clone.assets)
    petl = json.loads(suite.results("petl").read_text())
    assert run_suite(clone, stages=("sample", "petl"), jobs=2, seeds=(0,))["trained_now"] == 0
    assert json.loads(clone.results("petl").read_text()) == petl
    assert json.loads(clone.results("sample_efficiency").read_text())["runs"] == json.loads(
        suite.results("sample_efficiency").read_text())["runs"]
    record = run_suite(clone, stages=("petl",), jobs=2, seeds=(1,))
    assert record["trained_now"] == 2 * 4 + 1  # 4 methods × 2 shot settings, a linear probe per rate at 1,000
    rows = json.loads(clone.results("petl").read_text())["runs"]
    assert [r for r in rows if r["seed"] == 0] == petl["runs"]
    assert {(r["method"], r["shots"]) for r in rows if r["seed"] == 1} == {
        (m, s) for m in ("convpass", "convpass_attn", "linear", "finetune") for s in (1, None)}
    backbone = clone.runs / "shipped" / "deit" / "model.safetensors"
    assert backbone.read_bytes() == (suite.assets / "models" / "deit_fmnist" / "model.safetensors").read_bytes()
    adapted = json.loads((clone.runs / "petl" / "convpass_full_s1" / "history.json").read_text())
    assert adapted["config"]["backbone"] == str(backbone)


def test_a_cell_whose_grid_has_not_all_run_chooses_nothing(suite, tmp_path):
    suite, _ = suite
    wider = replace(TINY, petl_lr_grid=(("linear", (1e-1, 1e-2, 1e-3)),))
    clone = replace(suite, budget=wider, runs=tmp_path / "runs", assets=tmp_path / "assets")
    shutil.copytree(suite.assets, clone.assets)
    searched = [r for r in summarise_petl(clone)["runs"] if r["method"] == "linear" and r["shots"] is None]
    assert len(searched) == 2 and not any(r["chosen"] for r in searched)


def test_rows_of_another_recipe_are_not_reused(suite, tmp_path):
    suite, _ = suite
    clone = replace(suite, budget=replace(TINY, petl_epochs=2), runs=tmp_path / "runs", assets=tmp_path / "assets")
    shutil.copytree(suite.assets, clone.assets)
    assert clone.recorded("petl") == {} and len(suite.recorded("petl")) == 8 + 1
    # a backbone trained for another length: its petl rows (and the shipped Convpass) are trained again
    longer = replace(clone, budget=replace(TINY, shipped_steps=(TINY.shipped_steps or 0) + 100))
    assert longer.recorded("petl") == {} and "for 100 steps" in longer.recipe("petl")


def test_a_missing_backbone_is_named(tmp_path):
    suite = Suite(TINY, tmp_path / "runs", tmp_path / "assets", source="synthetic", target="synthetic")
    with pytest.raises(FileNotFoundError, match="deit/model.safetensors"):
        run_suite(suite, stages=("petl",), jobs=1)


def test_the_default_budgets_are_those_whose_models_ship():
    assert findings.SHIPPED_BUDGETS == ("scenes", "2h") and BUDGETS["2h"].seeds == (0,)
    names = {name for b in findings.SHIPPED_BUDGETS for name in BUDGETS[b].names if name}
    assert names == set(zoo.SHIPPED) and zoo.DEFAULT_MODEL in names
    with pytest.raises(SystemExit):
        main(["--budget", "nonexistent"])


def test_the_scenes_budget_ablates_its_variant_and_keeps_the_1000_step_histories(tmp_path):
    """Issue 31: the variant's two changes separated (its rate with pos_proj's decay kept), at the 1,000 steps of
    the histories it is compared with (kept beside the 5,000-step ones)."""
    scenes = Suite(BUDGETS["scenes"], tmp_path / "runs", tmp_path / "assets")
    [ablation] = scenes.ablation()
    variant = next(c for c in scenes.shipped() if c.gpsa_lr_scale != 1.0)
    assert ablation.gpsa_weight_decay and not variant.gpsa_weight_decay and ablation.steps == 1000
    assert replace(ablation, gpsa_weight_decay=False, steps=variant.steps, eval_points=variant.eval_points,
                   snapshots=True, out=variant.out) == variant
    assert Suite(BUDGETS["2h"], tmp_path / "runs", tmp_path / "assets").ablation() == []
    kept = findings.load_results("histories/convit_gpsa_1000steps", "scenes")
    assert kept["steps"] == 1000 and kept["config"]["gpsa_lr_scale"] == 50


def test_a_budget_with_a_gpsa_variant_ships_it_beside_the_pair_at_its_width(tmp_path):
    budget = replace(TINY, name="tiny_variant", shipped_steps=3, gpsa_lr_scale=20, head_dim=8, eval_images=16,
                     names=("c", "d", "p", "c_fast"), data_titles=("bars", "digits"))
    suite = Suite(budget, tmp_path / "runs", tmp_path / "assets", source="synthetic", target="digits")
    run_suite(suite, stages=("shipped",), jobs=2)
    models = tmp_path / "assets" / "models"
    cards = {name: zoo.ModelCard.load(models / name) for name in ("c", "d", "p", "c_fast")}
    assert cards["c_fast"].recipe["gpsa_lr_scale"] == 20 and cards["c"].recipe["gpsa_lr_scale"] == 1.0
    assert "variant, not the paper's recipe" in cards["c_fast"].title and "bars" in cards["c_fast"].title
    assert all(card.architecture["kwargs"]["embed_dim"] in (8, 72) for card in cards.values())
    assert cards["p"].backbone == "d" and (models / "p" / "adapters.safetensors").is_file()
    assert not (models / "p" / "model.safetensors").exists()
    for name in cards:  # every shipped run ships its snapshots
        assert zoo.snapshot_steps(name, root=models)
    fast = zoo.read_history("c_fast", root=models)["entries"][-1]["lr_sum"]
    assert fast["gpsa"] == pytest.approx(20 * fast["decay"])
    histories = tmp_path / "assets" / "results" / "tiny_variant" / "histories"
    assert sorted(p.name for p in histories.iterdir()) == ["convit.json", "convit_gpsa.json", "deit.json"]


def test_petl_on_equal_terms_grids_refits_and_a_convit_fine_tune(suite, tmp_path):
    """Issue 31: every method of the 1,000-image setting chooses its rate on the same validation split; full
    fine-tuning trains once more on the whole split at its chosen rate; and the paper-recipe ConViT is fine-tuned
    beside the DeiT. Each row says what it adapted, on how many images, and how its rate was chosen."""
    suite, _ = suite
    budget = replace(TINY, petl_shots=(None,), petl_lr_grid=(("convpass", (1e-2, 1e-3)), ("finetune", (1e-2, 1e-3))),
                     petl_refit=("finetune",), petl_convit=("finetune",))
    equal = replace(suite, budget=budget, runs=tmp_path / "runs", assets=tmp_path / "assets")
    shutil.copytree(suite.runs / "shipped", equal.runs / "shipped")
    record = run_suite(equal, stages=("petl",), jobs=2)
    # the grids of Convpass, fine-tuning of the DeiT and of the ConViT (2 rates each), Convpass-attn and the linear
    # probe (one rate each: no grid), and a refit of each fine-tuning
    assert record["trained_now"] == 3 * 2 + 2 + 2
    rows = json.loads(equal.results("petl").read_text())["runs"]
    assert {r["backbone"] for r in rows} == {"deit_fmnist", "convit_fmnist"}
    for row in rows:
        gridded = row["method"] in ("convpass", "finetune")
        assert row["lr_grid"] == ([1e-2, 1e-3] if gridded else None)
        assert row["lr_chosen_on"] == ("validation" if gridded else None)
        assert (row["train_images"], row["val_images"]) == ((256, 0) if row["refit"] or not gridded else (224, 32))
    for backbone in ("deit_fmnist", "convit_fmnist"):
        grid = [r for r in rows if r["method"] == "finetune" and r["backbone"] == backbone and not r["refit"]]
        [refit] = [r for r in rows if r["method"] == "finetune" and r["backbone"] == backbone and r["refit"]]
        [chosen] = [r for r in grid if r["chosen"]]
        assert chosen["last_epoch_val_accuracy"] == max(r["last_epoch_val_accuracy"] for r in grid)
        assert refit["lr"] == chosen["lr"] and not refit["chosen"]
    convit = json.loads((equal.runs / "petl" / "convit_finetune_full_all_s0" / "history.json").read_text())
    assert convit["architecture"]["timm_name"] == "convit_tiny"
    assert convit["config"]["backbone"].endswith("shipped/convit/model.safetensors")
    summary = findings.petl_summary({"runs": rows})
    assert "finetune on convit_fmnist" in summary["methods"] and "convpass" in summary["methods"]
    # a fresh clone (assets only) keeps every row, the refits too, and trains nothing
    clone = replace(equal, runs=tmp_path / "clone_runs", assets=tmp_path / "clone_assets")
    shutil.copytree(equal.assets, clone.assets)
    shutil.copytree(suite.assets, clone.assets, dirs_exist_ok=True)  # (the shipped entries the backbones come from)
    shutil.copyfile(equal.results("petl"), clone.results("petl"))
    assert run_suite(clone, stages=("petl",), jobs=2)["trained_now"] == 0
    assert json.loads(clone.results("petl").read_text())["runs"] == rows
