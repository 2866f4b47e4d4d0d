"""Fetch timm's own model tests, at the installed timm version, for tests/timm_models/ (the drop-in check).

    python -m scripts.fetch_timm_tests     # scripts/setup.sh --test runs it

Takes `tests/test_models.py` and the Apache-2.0 LICENSE from timm's source distribution on the package registry,
unchanged, and writes them to tests/timm_models/ (git ignores both). Does nothing when that version is there.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "tests" / "timm_models"
FILES = {"tests/test_models.py": "test_models.py", "LICENSE": "TIMM_LICENSE"}
STAMP = TARGET / "TIMM_VERSION"


def fetch(timm_version: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "--no-binary", ":all:", "--dest", tmp, f"timm=={timm_version}"], check=True)
        (sdist,) = Path(tmp).glob("timm-*.tar.gz")
        with tarfile.open(sdist) as archive:
            for inside, name in FILES.items():
                member = archive.extractfile(f"timm-{timm_version}/{inside}")
                (TARGET / name).write_bytes(member.read())
    STAMP.write_text(timm_version + "\n")


def main() -> int:
    timm_version = version("timm")
    if STAMP.is_file() and STAMP.read_text().strip() == timm_version and (TARGET / "test_models.py").is_file():
        return 0
    fetch(timm_version)
    print(f"fetched timm {timm_version}'s tests/test_models.py into {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
