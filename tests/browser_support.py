"""What every browser test module needs before anything else: Chromium and Playwright. Imported first, it skips the
module (saying why) where either is missing, and gives Playwright's `expect`."""
from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)
expect = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed").expect
