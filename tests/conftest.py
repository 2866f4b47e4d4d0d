"""Shared fixtures: the app started as a real server (`python app.py`) on a free local port."""
from __future__ import annotations

import pytest

from scripts.app_server import start_app, stop_app


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory):
    """URL of `python app.py` running on CPU with the shipped models, its temp files in a test folder."""
    process, url = start_app(tmp_path_factory.mktemp("app"), 180,
                             forced={"EXPLORER_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"})
    yield url
    stop_app(process)
