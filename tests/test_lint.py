"""The code base stays `ruff check` clean (configuration in pyproject.toml), and pyproject.toml declares what
scripts/setup.sh installs."""
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _requirements(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_pyproject_declares_the_requirements_and_the_cli():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == _requirements("requirements.txt")
    assert sorted(project["optional-dependencies"]["test"]) == sorted(_requirements("requirements-test.txt"))
    module, function = project["scripts"]["petl-core"].split(":")
    assert callable(getattr(__import__(module, fromlist=[function]), function))
