"""Shared fixtures: the app started as a real server (`python app.py`) on a free local port; and the default
selection: tests marked `slow` or `browser` run only with `--full` (as CI does) or when `-m`, `-k` or a node id
asks for them."""
from __future__ import annotations

import subprocess

import pytest

from scripts.app_server import start_app, stop_app

LONG = ("slow", "browser")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true",
                     help=f"also run the tests marked {' or '.join(LONG)} (the README's test command and CI do)")


def _chosen(config: pytest.Config) -> bool:
    """Whether tests were asked for by marker, keyword or node id."""
    return bool(config.option.markexpr or config.option.keyword or any("::" in arg for arg in config.args))


def pytest_ignore_collect(collection_path, config: pytest.Config) -> bool | None:
    # timm's own test file (tests/timm_models) parametrises ~18,000 tests, all `slow` here: the quick selection
    # does not import and collect them (about 2 s)
    if collection_path.parent.name == "timm_models" and collection_path.name == "test_models.py":
        if not (config.getoption("--full") or _chosen(config)):
            return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--full") or _chosen(config):  # a test asked for by marker, keyword or node id runs
        return
    left_out = [item for item in items if any(item.get_closest_marker(name) for name in LONG)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]


@pytest.fixture(scope="session")
def app_process(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.Popen, str]:
    """`python app.py` running on CPU with the shipped models, its temp files in a test folder: (process, URL)."""
    process, url = start_app(tmp_path_factory.mktemp("app"), 180,
                             forced={"EXPLORER_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"})
    yield process, url
    stop_app(process)


@pytest.fixture(scope="session")
def app_server(app_process: tuple[subprocess.Popen, str]) -> str:
    """The URL of the shared `app_process`."""
    return app_process[1]
