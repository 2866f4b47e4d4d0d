"""timm's own model tests (tests/test_models.py of the installed timm, fetched unchanged by
scripts/fetch_timm_tests.py) run on petl_core's models: `create_model` in that module is routed to
`petl_core.create_model` for the families petl_core instruments, and only those models' tests are kept.

Every test here is marked `slow` (157 tests; most of their time is timm's pruning contract, which runs each model
once per block): `pytest --full` runs them, as CI does.
"""
from __future__ import annotations

import inspect

import pytest
import timm

import petl_core

ROUTED = (
    "convit_tiny", "convit_small", "convit_base",
    "deit_tiny_patch16_224", "deit_small_patch16_224", "deit_tiny_distilled_patch16_224",
    "deit_small_distilled_patch16_224",
    "vit_tiny_patch16_224", "vit_tiny_r_s16_p8_224", "vit_small_patch16_224", "vit_small_patch14_reg4_dinov2",
    "vit_small_patch16_18x2_224", "vit_base_patch16_224", "vit_base_patch16_224_miil",
)
"""The timm names whose tests run on petl_core: every ConViT, DeiT and ViT block layout petl_core instruments
(plain, distilled, registers, hybrid stem, parallel blocks)."""
NEEDS_HUB = ("test_model_inference", "test_model_load_pretrained", "test_model_features_pretrained")
"""timm's tests that download pretrained weights: left out, as there is no network here (petl_core.create_model
raises HubUnavailableError, timm an OSError)."""
MARKERS = ("base", "forward", "backward", "cfg", "cfg_nonstd", "torchscript", "features", "fxforward", "fxbackward")


def routed_create_model(model_name: str, *args, **kwargs):
    """timm.create_model, through petl_core for the ROUTED names."""
    base = model_name.split(".")[0]
    make = petl_core.create_model if base in ROUTED else timm.create_model
    return make(model_name, *args, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", f"{marker}: a test group of timm's own test_models.py")


def _routed(item: pytest.Item) -> bool:
    if item.originalname in NEEDS_HUB:
        return False
    params = getattr(item, "callspec", None)
    name = params.params.get("model_name") if params is not None else None
    if name is not None:
        return name.split(".")[0] in ROUTED
    source = inspect.getsource(item.function)  # a test of one fixed model, e.g. the ConViT dtype test
    return any(f"'{n}'" in source or f'"{n}"' in source for n in ROUTED)


@pytest.hookimpl(tryfirst=True)  # before the root conftest leaves `slow` tests out of the quick selection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = [item for item in items if item.path.parent.name == "timm_models"]
    dropped = [item for item in here if not _routed(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        left_out = set(dropped)
        items[:] = [item for item in items if item not in left_out]
    for item in here:
        item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _route_to_petl_core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.module.__name__.endswith("test_models") and hasattr(request.module, "create_model"):
        monkeypatch.setattr(request.module, "create_model", routed_create_model)
