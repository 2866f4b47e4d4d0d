"""A timm-format weights file of a hub model's architecture at its random initialisation: what "Your own weights"
takes in place of hub weights, to try the app (or test it) at real scale offline. Never shipped as a model.

    .venv/bin/python scripts/make_random_weights.py convit_small.fb_in1k out/convit_small_random.safetensors
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make(name: str, out: Path, seed: int = 0) -> Path:
    """Write the state dict of timm's `name` (a hub entry of petl_core.hub), randomly initialised with `seed`, to
    `out` (.safetensors); returns `out`."""
    import timm
    import torch
    from safetensors.torch import save_file

    from petl_core.hub import HUB

    if name not in HUB:
        raise ValueError(f"{name!r} is not a hub model of this app; choose one of {', '.join(HUB)}")
    torch.manual_seed(seed)
    model = timm.create_model(name.split(".")[0], pretrained=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a hub model, e.g. convit_small.fb_in1k")
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = make(args.name, args.out, args.seed)
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MB, {args.name} at random initialisation (seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
