"""Write the examples that fit each shipped model: for every task a shipped model was trained on, the test images
its models get right and wrong first (`petl_core.examples.write_task_examples`), under assets/examples/<task>/.

    python -m scripts.make_examples                 # needs the datasets (Fashion-MNIST: Debian's dataset-fashion-mnist)
    python -m scripts.make_examples --out /tmp/examples
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "examples", help="folder of the task folders")
    args = parser.parse_args(argv)
    from petl_core import zoo
    from petl_core.examples import write_task_examples

    tasks = defaultdict(list)
    for name in zoo.SHIPPED:
        loaded = zoo.load(name)
        tasks[loaded.card.recipe["data"]].append(loaded)
    for data, models in tasks.items():
        paths = write_task_examples(data, models, args.out)
        size = sum(p.stat().st_size for p in paths)
        print(f"{data}: {len(paths)} images ({size:,} bytes) for {', '.join(m.name for m in models)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
