"""How long does one turn of the inductive-bias dial take? A benchmark, not a test.

A dial change (what /dial computes, without HTTP and drawing) answers in two parts: first the user's image traced
with the gates set (`petl_core.dial.set_gates` + `analyze`: every block's attention kept), which gives the maps,
the prediction and the nonlocality; then the accuracy on the probe set (the first 256 test images of the model's
task, scored once per setting and cached): by the app's `DialProbe`, which re-runs only the blocks from the first
GPSA block the change reaches (a row per block: σ of that block's heads turned, the others as trained), and, for
reference, by `probe_accuracy`'s whole pass. Side by side in one run, for every shipped
ConViT, against the reference, timm's own forward of the same model class and weights (`torch.no_grad`, no dial,
nothing captured): on the one image, and on the 256 probe images at once. "× timm" is our median over the
reference's. The issue's target is 0.5 s of server time per change; the page gets the first part, drawn (the
"first answer" row: `app.tabs.dial.DialView`, figures included), before the probe accuracy.

Last, per model, the floor under any exact scorer after a change of GPSA block 0: the blocks it cannot skip, 1 to
depth - 2, over the 256 probe images (a changed block 0 changes every token entering block 1, and the last block
needs every token's keys and values). Timed on our blocks (faster than timm's, whose GPSA materialises its
attention), with the process's 2 intra-op threads, and as two Python threads of one intra-op thread each, half the
probe each (the best split of the 2 cores found; not what a server can do, as torch's thread count is process state
shared with every other request). Its reference is the whole pass of `probe_accuracy`.

    .venv/bin/python bench/dial.py [--reps 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import timm
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.service import Service  # noqa: E402
from app.tabs.dial import DialView  # noqa: E402
from petl_core import zoo  # noqa: E402
from petl_core.analysis import analyze  # noqa: E402
from petl_core.dial import DialProbe, parse_gates, probe_accuracy, probe_set, set_gates  # noqa: E402
from petl_core.preprocess import prepare  # noqa: E402


def _median_ms(fn, reps: int) -> float:
    fn()  # warm-up (caches, allocator)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _measure(name: str, card: zoo.ModelCard, reps: int) -> dict[str, float]:
    """Median ms of the two parts of a dial change of the shipped ConViT `name`, and of timm's forward on the same
    inputs."""
    loaded = zoo.load(name)
    probe, pre = probe_set(card.recipe["data"]), card.preprocessing
    batch = prepare(probe.images, 1, pre["mean"], pre["std"], train=False, base_size=pre["base_size"], pad=pre["pad"])
    image = batch[:1]
    heads = loaded.model.blocks[0].attn.num_heads
    gpsa = sum(hasattr(b.attn, "gating_param") for b in loaded.model.blocks)
    settings = [parse_gates([[v] * heads] * gpsa, loaded.model) for v in (0.0, 0.5, 1.0)]
    turns = iter(range(10**9))

    def maps() -> None:
        with set_gates(loaded.model, settings[next(turns) % 3]):
            analyze(loaded.model, image)

    def score() -> None:
        with set_gates(loaded.model, settings[next(turns) % 3]):
            probe_accuracy(loaded.model, probe, pre)

    scorer = DialProbe(loaded.model, probe, pre)

    def change(block: int):  # σ of every head of one GPSA block cycles through 0, 0.5, 1; the others as trained
        def turn() -> None:
            scorer.accuracy([[(next(turns) % 3) / 2] * heads if b == block else None for b in range(gpsa)])
        return turn

    # timm's own class with the same weights: no dial, nothing captured
    reference = timm.create_model(card.architecture["timm_name"], **card.architecture["kwargs"]).eval()
    reference.load_state_dict(loaded.model.state_dict())

    def timm_on(x: torch.Tensor):
        def forward() -> None:
            with torch.no_grad():
                reference(x)
        return forward

    view, example = DialView(Service("cpu")), str(ROOT / "assets" / "examples" / "scene_dress.png")
    gates = [json.dumps(s) for s in settings]

    def first_answer() -> None:  # what the page shows first: the figures drawn, the probe not scored yet
        next(view.dial(example, name, gates[next(turns) % 3], "center"))

    return {"maps": _median_ms(maps, reps), "timm_image": _median_ms(timm_on(image), reps),
            "first": _median_ms(first_answer, reps), "probe": _median_ms(score, reps),
            "timm_probe": _median_ms(timm_on(batch), reps), "images": len(probe),
            "changes": [_median_ms(change(block), reps) for block in range(gpsa)], **_floor(loaded.model, scorer, reps)}


def _floor(model: torch.nn.Module, scorer: DialProbe, reps: int) -> dict[str, float]:
    """Median ms of blocks 1 .. depth-2 of `model` over the probe's streams after block 0, in this thread and split
    over two threads of one intra-op thread each."""
    with torch.no_grad():
        streams = [model.blocks[0](x) for x in scorer._entry]

    def blocks(part: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for x in part:
                for u in range(1, len(model.blocks) - 1):
                    if u == model.local_up_to_layer:
                        x = torch.cat((model.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
                    x = model.blocks[u](x)

    def one_thread_each(part: list[torch.Tensor]) -> None:
        torch.set_num_threads(1)  # this thread's intra-op threads (and the default of threads made after it)
        blocks(part)

    def split() -> None:
        half = len(streams) // 2
        workers = [threading.Thread(target=one_thread_each, args=(part,)) for part in (streams[:half], streams[half:])]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    threads = torch.get_num_threads()
    floor = {"floor": _median_ms(lambda: blocks(streams), reps), "floor_split": _median_ms(split, reps),
             "last": len(model.blocks) - 2}
    torch.set_num_threads(threads)
    return floor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.reps} changes\n")
    print("| model | part of a change | ours ms | timm forward ms | × timm |\n|---|---|---:|---:|---:|")
    for name in zoo.SHIPPED:
        card = zoo.ModelCard.load(zoo.ASSETS / name)
        if card.method == "convit":
            ms = _measure(name, card, args.reps)
            print(f"| {name} | maps, prediction, nonlocality (1 image) | {ms['maps']:.0f} | {ms['timm_image']:.0f} | "
                  f"{ms['maps'] / ms['timm_image']:.2f} |")
            print(f"| {name} | first answer of /dial, figures drawn (1 image) | {ms['first']:.0f} | "
                  f"{ms['timm_image']:.0f} | {ms['first'] / ms['timm_image']:.2f} |")
            print(f"| {name} | probe accuracy ({ms['images']} images), whole pass | {ms['probe']:.0f} | "
                  f"{ms['timm_probe']:.0f} | {ms['probe'] / ms['timm_probe']:.2f} |")
            for block, changed in enumerate(ms["changes"]):
                print(f"| {name} | probe accuracy after a change of GPSA block {block} (DialProbe) | {changed:.0f} | "
                      f"{ms['timm_probe']:.0f} | {changed / ms['timm_probe']:.2f} |")
            for key, how in (("floor", "2 intra-op threads"), ("floor_split", "two threads of 1 intra-op thread")):
                print(f"| {name} | floor after a change of GPSA block 0: blocks 1-{ms['last']} alone, {how} (ours vs "
                      f"probe_accuracy's whole pass) | {ms[key]:.0f} | {ms['probe']:.0f} | "
                      f"{ms[key] / ms['probe']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
