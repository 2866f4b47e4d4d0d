"""petl_core's torch-free part loads without torch (the first step to an app page served before torch loads: issue
13's cold start), and the package's lazy exports are the objects of the modules they name."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import petl_core
from petl_core import checkpoint, data, images, models, probe, zoo
from petl_core import errors as errors_module

ROOT = Path(__file__).resolve().parents[1]
TORCH_FREE = ["petl_core", "petl_core.cards", "petl_core.catalog", "petl_core.caution", "petl_core.checkpoint",
              "petl_core.curves", "petl_core.errors", "petl_core.findings", "petl_core.hub", "petl_core.query",
              "petl_core.registry", "petl_core.runtime", "petl_core.scales"]


def _fresh_interpreter(code: str) -> str:
    """What `code` prints, run by this venv's Python in a fresh process, offline (no network wait)."""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_torch_free_modules_load_without_torch_or_timm():
    # imported, and the catalogue used as a page listing the models uses it
    code = (f"import sys, json\nfor m in {TORCH_FREE!r}: __import__(m)\n"
            "from petl_core import catalog\n"
            "entries = catalog.list_models()\n"
            "sizes = [catalog.dimensions(e.name) for e in entries]\n"
            "steps = [catalog.snapshot_steps(e.name) for e in entries]\n"
            "histories = [catalog.read_history(e.name) is not None for e in entries]\n"
            "print(json.dumps([sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules),\n"
            "                  [e.name for e in entries], sizes, histories, [bool(s) for s in steps]]))")
    loaded, names, sizes, histories, snapshots = json.loads(_fresh_interpreter(code))
    assert loaded == []
    assert names == [e.name for e in zoo.list_models()] and [tuple(s) for s in sizes] == [zoo.dimensions(n)
                                                                                         for n in names]
    assert histories == [n in zoo.SHIPPED for n in names]  # the shipped models have their histories
    assert any(snapshots)
    # and what the app catches is the class the library raises
    from petl_core.runtime import limit_malloc_arenas, retain_freed_memory  # noqa: F401 (importable, torch-free)
    assert checkpoint.CheckpointError is errors_module.CheckpointError
    assert images.ImageError is errors_module.ImageError
    assert data.DatasetMissingError is errors_module.DatasetMissingError
    assert models.HubUnavailableError is petl_core.HubUnavailableError is errors_module.HubUnavailableError


def test_the_lazy_exports_are_the_modules_objects():
    assert petl_core.trace is probe.trace and petl_core.Trace is probe.Trace
    assert petl_core.create_model is models.create_model and petl_core.instrument is models.instrument
    assert petl_core.metrics is sys.modules["petl_core.metrics"]
    assert set(petl_core.__all__) <= set(dir(petl_core))
    try:
        petl_core.not_a_name  # noqa: B018
    except AttributeError as e:
        assert "not_a_name" in str(e)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_the_page_is_built_and_served_code_imported_without_torch():
    # issue 13's cold start: app.py serves the page before torch loads (then imports the backend: Service.start)
    code = ("import importlib.util, json, sys\n"
            "spec = importlib.util.spec_from_file_location('app_main', 'app.py')\n"
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
            "from app import build_demo\nfrom app.service import Service\n"
            "service = Service('auto')\n"
            "demo = build_demo(service)\n"
            "print(json.dumps([sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'timm', 'torchvision', "
            "'matplotlib'}), len(demo.fns)]))\n"
            "service.start()\n"
            "print(json.dumps(sorted(m for m in ('torch', 'timm', 'matplotlib') if m in sys.modules)))")
    built, started = (json.loads(line) for line in _fresh_interpreter(code).splitlines()[-2:])
    assert built[0] == [] and built[1] > 50  # the whole page (every view's events), and none of them
    assert started == ["matplotlib", "timm", "torch"]  # and what Service.start imports, it does


def _imports_in_functions(path: Path) -> set[str]:
    """The petl_core modules `path` imports inside functions (`from petl_core.x import y`, `from petl_core import
    x`)."""
    modules = set()
    for function in ast.walk(ast.parse(path.read_text())):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom) and node.module == "petl_core":
                modules |= {f"petl_core.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("petl_core."):
                modules.add(node.module)
            elif isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names if alias.name.startswith("petl_core")}
    return modules


def test_every_module_the_app_imports_where_it_is_used_is_imported_before_requests_run():
    # Service.start imports BACKEND in one thread before the server takes requests: no two requests import a module
    # at the same time (a torch-free module needs no such care)
    from app.service import BACKEND

    used = set().union(*(_imports_in_functions(p) for p in [ROOT / "app.py", *(ROOT / "app").rglob("*.py")]))
    assert {"petl_core.zoo", "petl_core.figures", "petl_core.dial"} <= used  # (the scan finds them)
    assert used - set(TORCH_FREE) <= set(BACKEND), sorted(used - set(TORCH_FREE) - set(BACKEND))
    assert set(BACKEND) <= used  # and BACKEND lists nothing the app does not use
