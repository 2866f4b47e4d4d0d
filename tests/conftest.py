"""Shared fixtures: the app started as a real server (`python app.py`) on a free local port."""
from __future__ import annotations

import subprocess

import pytest

from scripts.app_server import start_app, stop_app


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
