#!/usr/bin/env bash
# Create .venv (if missing) and install the pinned requirements; with --test also the test-only packages.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "error: Python 3.10 or newer is needed ($("$PYTHON" --version 2>&1) found); set PYTHON=/path/to/python3.x" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

requirements=(-r requirements.txt)
if [ "${1:-}" = "--test" ]; then
  requirements+=(-r requirements-test.txt)
  # The tests train on the real Fashion-MNIST files and drive the app in Debian's Chromium (through Playwright's
  # Python package only: its own browser download cannot work offline).
  packages=()
  if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && [ -z "${PETL_FASHION_MNIST:-}" ]; then
    packages+=(dataset-fashion-mnist)
  fi
  command -v chromium >/dev/null || packages+=(chromium)
  if [ ${#packages[@]} -gt 0 ]; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
  fi
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "${requirements[@]}" 2> >(grep -v "^WARNING: Location" >&2)
# timm's own model tests at the installed version, run on petl_core's models by tests/timm_models/
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m scripts.fetch_timm_tests 2> >(grep -v "^WARNING: Location" >&2)
fi
# what a README reader is told to expect: the time this took and the space the environment takes
nvidia=$(du -sh .venv/lib/python3*/site-packages/nvidia 2>/dev/null | cut -f1 || true)
echo "setup.sh: done in ${SECONDS} s; .venv takes $(du -sh .venv | cut -f1)${nvidia:+ (${nvidia} of it the NVIDIA CUDA libraries that the torch wheel from PyPI depends on)}"
