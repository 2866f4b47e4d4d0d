"""How long does the command-line analysis take next to a bare `import torch, timm`? A benchmark, not a test.

Side by side in one run, each a fresh Python process of this venv, interleaved per repetition (starting with a
different one each time, so machine drift hits both alike):

1. import        `python -c "import torch, timm"`: the floor any timm tool pays;
2. analyze       `python -m petl_core analyze IMAGE --model MODEL --out DIR`: imports, model load, one traced
                 forward pass, every figure written as PNG and analysis.json.

"× import" is the median over repetitions of (analyze / import) within the same repetition. The issue's target is
at most 1.5×.

    .venv/bin/python bench/cli_speed.py [--model convit_scenes] [--image assets/examples/chelsea.png] [--reps 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from petl_core import zoo  # noqa: E402


def _seconds(command: list[str]) -> float:
    """Wall time of `command` run to completion in ROOT (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=zoo.DEFAULT_MODEL)
    parser.add_argument("--image", type=Path, default=ROOT / "assets" / "examples" / "chelsea.png")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        commands = {"import": [sys.executable, "-c", "import torch, timm"],
                    "analyze": [sys.executable, "-m", "petl_core", "analyze", str(args.image), "--model", args.model,
                                "--out", out]}
        for command in commands.values():  # warm-up: the OS file cache, matplotlib's font cache
            _seconds(command)
        times = {name: [] for name in commands}
        for rep in range(args.reps):
            names = list(commands)[rep % 2:] + list(commands)[:rep % 2]
            for name in names:
                times[name].append(_seconds(commands[name]))
        figures = len(list(Path(out).glob("*.png")))
    ratios = [a / i for a, i in zip(times["analyze"], times["import"], strict=True)]
    print(f"model {args.model}, {args.reps} repetitions, {figures} PNG files written per analysis")
    for name, values in times.items():
        print(f"{name:8s} median {statistics.median(values):6.2f} s  (min {min(values):.2f}, max {max(values):.2f})")
    print(f"analyze_over_import={statistics.median(ratios):.2f} (per-repetition ratios "
          f"{', '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
