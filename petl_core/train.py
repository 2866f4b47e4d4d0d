"""Training that records the dynamics the explorer shows: gates, nonlocality and positional centres over time.

One run = one command (see `python -m petl_core train --help`):

    python -m petl_core train --model convit --data fashion_mnist --epochs 4 --out runs/convit
    python -m petl_core train --model convpass --backbone runs/deit/model.safetensors --data digits --out runs/cp
    torchrun --nproc_per_node 2 -m petl_core train --model deit --data fashion_mnist --steps 2000 --out runs/deit

Recipe (methods.md §1.5, §2.3): AdamW, linear warm-up then cosine decay per step, weight decay off for
biases, norms, gates, position embedding and class token; label smoothing for training from scratch, plain
cross-entropy for adaptation. The augmentation and the input size are the dataset's own (`petl_core.data.DATASETS`:
e.g. a random shift of up to 2 pixels, a horizontal flip only where a mirror keeps the class).

Variant, not the paper's recipe: `--gpsa-lr-scale S` (S ≠ 1) trains GPSA's gates and positional projections in a
group of their own at S times the learning rate, without weight decay, so that they can travel far enough to
move: Adam moves a parameter by about lr per step at most, so a gate's reach is bounded by its group's Σlr.

Besides the evaluation points, the history records per entry the running Σlr of every parameter group (`lr_sum`),
the dataset's augmentation (`augmentation`) and, for ConViT, the gate-gradient diagnostic at step 0 and at the end
(`gate_grad`: mean and spread of ∂L/∂λ per GPSA block and head over fixed training batches). The run directory
holds `history.json` (rewritten at every evaluation point), `model.safetensors`, and `checkpoint/` (weights,
optimiser, step) from which an interrupted run resumes.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import timm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from timm.optim import param_groups_weight_decay
from torch import nn

from .data import dataset_spec, fraction_subset, k_shot_subset, validation_split
from .diagnostics import dynamics, evaluate, gate_gradients, gpsa_gates
from .models import GPSA
from .preprocess import prepare
from .registry import METHODS, architecture_record, build_model
from .runtime import resolve_device

__all__ = ["TrainConfig", "train"]

CHECKPOINT_SECONDS = 300.0
"""Between evaluation points, a checkpoint at least this often (wall time): a long run on a machine lent by the
hour, or a session that ends hard, loses at most this much work."""


@dataclass
class TrainConfig:
    """One training run."""

    method: str = "convit"
    """convit / deit from scratch; convpass, convpass_attn, linear (probe) or finetune on `backbone`."""
    data: str = "fashion_mnist"
    """fashion_mnist, digits, fashion_scenes, digits_scenes, synthetic, or an ImageFolder directory with train/
    and test/."""
    out: str = "runs/run"
    backbone: str | None = None
    """Weights to adapt (needed by convpass, convpass_attn, linear, finetune): the `deit` architecture, or for linear
    and finetune the `convit` one too."""
    data_root: str | None = None
    fraction: float = 1.0
    """Keep this class-balanced share of the training set."""
    shots: int | None = None
    """Keep this many training images per class (k-shot), drawn with `seed`."""
    val_images: int = 0
    """Hold out about this many of the (kept) training images, class-balanced and drawn with `seed`, as a validation
    split: every entry then records `val_accuracy`, by which hyper-parameters and epochs can be chosen without
    looking at the test set. 0: no split."""
    epochs: float = 1.0
    steps: int | None = None
    """Total optimisation steps; overrides `epochs` when given (the sample-efficiency protocol fixes steps)."""
    batch: int = 128
    """Global batch, split across processes under torchrun."""
    lr: float = 1e-3
    gpsa_lr_scale: float = 1.0
    """Variant, not the paper's recipe (1.0): other values put GPSA's gating_param and pos_proj in a group 'gpsa' at
    this multiple of the learning rate, without weight decay (ConViT only)."""
    gpsa_weight_decay: bool = False
    """With gpsa_lr_scale ≠ 1: keep the paper recipe's weight decay on pos_proj's weights (their own group
    'gpsa_decay', at the same multiple of the learning rate): the ablation that separates the variant's two
    changes, the faster GPSA and no decay on its positions."""
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    warmup_fraction: float | None = None
    """Share of the steps spent warming up; default 0.05 from scratch (DeiT: 5 of 300 epochs), 0.1 to adapt
    (Convpass: 10 of 100)."""
    weight_decay: float | None = None
    """Default 0.05 from scratch (DeiT/ConViT), 1e-4 to adapt (Convpass)."""
    label_smoothing: float | None = None
    """Default 0.1 from scratch, 0 to adapt (Convpass trains with plain cross-entropy)."""
    drop_path: float | None = None
    """Default 0.1 for the trained transformer (from scratch, full fine-tuning), 0 where the backbone is frozen
    (linear probe, Convpass): a frozen backbone runs as in evaluation, only the new parts train."""
    convpass_scale: float = 10.0
    convpass_dim: int = 8
    head_dim: int = 16
    """Channels per head (of 9) of a model trained from scratch; an adapted model keeps its backbone's."""
    patch_size: int = 4
    """Pixels per patch side of a model trained from scratch (4: a 32×32 input is an 8×8 grid; 8: a 4×4 grid, about
    4× fewer operations per image); an adapted model keeps its backbone's."""
    seed: int = 0
    device: str = "auto"
    eval_points: int = 16
    """Evaluation points after step 0: half spread geometrically over the first epoch-equivalent, half evenly."""
    probe_size: int = 1024
    """Test images on which nonlocality is measured at every evaluation point."""
    eval_images: int | None = None
    """Score the intermediate evaluation points on the first this many test images (the entry's `test_images`
    says how many); step 0 and the last step always score the whole test set. None: always the whole set."""
    eval_batch: int = 256
    gate_grad_batches: int = 40
    """Training batches of the gate-gradient diagnostic (ConViT; at step 0 and at the end; 0: off). It costs about
    that many extra steps twice and does not change the run."""
    snapshots: bool = False
    """Save the tensors training changes, in fp16, at every evaluation point (`snapshots/step<NNNNNN>.safetensors`,
    dense early like the points): what the app needs to show an image through training."""
    extra: dict = field(default_factory=dict)
    """Free-form notes kept in the history (e.g. which experiment launched the run)."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        scratch = self.method in ("convit", "deit")
        if not scratch and not self.backbone:
            raise ValueError(f"{self.method} adapts a pretrained backbone: pass --backbone FILE")
        if self.warmup_fraction is None:
            self.warmup_fraction = 0.05 if scratch else 0.1
        if self.weight_decay is None:
            self.weight_decay = 0.05 if scratch else 1e-4
        if self.label_smoothing is None:
            self.label_smoothing = 0.1 if scratch else 0.0
        if self.drop_path is None:
            self.drop_path = 0.1 if scratch or self.method == "finetune" else 0.0
        if self.gpsa_lr_scale <= 0:
            raise ValueError(f"gpsa_lr_scale must be positive, got {self.gpsa_lr_scale}")
        if self.gpsa_lr_scale != 1.0 and self.method != "convit":
            raise ValueError(f"gpsa_lr_scale applies to ConViT's GPSA blocks; {self.method} has none")
        if self.gpsa_weight_decay and self.gpsa_lr_scale == 1.0:
            raise ValueError("gpsa_weight_decay keeps a decay in the GPSA group, which needs gpsa_lr_scale ≠ 1")
        if self.gate_grad_batches < 0:
            raise ValueError(f"gate_grad_batches must be 0 (off) or more, got {self.gate_grad_batches}")


def _distributed() -> tuple[int, int]:
    """(rank, world size), initialising torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _device(name: str, rank: int) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)  # NCCL needs each process on its own GPU
    return device


def _param_groups(model: nn.Module, weight_decay: float, gpsa_lr_scale: float = 1.0,
                  gpsa_weight_decay: bool = False) -> list[dict]:
    """AdamW groups, each with a `name` and an `lr_scale` (its learning rate over the schedule's): 'decay' and
    'no_decay', and with gpsa_lr_scale ≠ 1 a group 'gpsa' (gates and positional projections, no decay: over a
    Σlr of 20 or more a decay of 0.05 would shrink the positional weights by e⁻¹ whatever their gradient); with
    `gpsa_weight_decay`, pos_proj's weights move to a group 'gpsa_decay' at the same rate with the decay."""
    gpsa = set()
    if gpsa_lr_scale != 1.0:
        gpsa = {id(p) for b in model.blocks if isinstance(b.attn, GPSA)
                for p in (b.attn.gating_param, *b.attn.pos_proj.parameters())}
    # timm's split (ndim ≤ 1, biases, the model's no_weight_decay() without decay), asked with a placeholder decay:
    # at 0 it would put every parameter in one group, and a resumed optimiser's state is matched to groups by size
    split = param_groups_weight_decay(model, weight_decay=1.0,
                                      no_weight_decay_list=getattr(model, "no_weight_decay", lambda: set())())
    kept = {g["weight_decay"] > 0: [p for p in g["params"] if id(p) not in gpsa] for g in split}
    decay, no_decay = kept.get(True, []), kept.get(False, [])
    own = [p for p in model.parameters() if p.requires_grad and id(p) in gpsa]
    groups = [{"name": "decay", "params": decay, "weight_decay": weight_decay, "lr_scale": 1.0},
              {"name": "no_decay", "params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0}]
    decayed = {id(b.attn.pos_proj.weight) for b in model.blocks if isinstance(b.attn, GPSA)} if gpsa_weight_decay \
        else set()
    if own:
        groups.append({"name": "gpsa", "params": [p for p in own if id(p) not in decayed], "weight_decay": 0.0,
                       "lr_scale": gpsa_lr_scale})
    if decayed:
        groups.append({"name": "gpsa_decay", "params": [p for p in own if id(p) in decayed],
                       "weight_decay": weight_decay, "lr_scale": gpsa_lr_scale})
    return groups


def learning_rate(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up from warmup_lr to lr over the first warmup_fraction of steps, then cosine to min_lr."""
    warmup = max(1, int(total * config.warmup_fraction))
    if step < warmup:
        return config.warmup_lr + (config.lr - config.warmup_lr) * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def eval_steps(total: int, steps_per_epoch: int, points: int) -> list[int]:
    """Step 0, the last step, and `points` in between: a third on a geometric series over the first epoch
    (1/32, 1/16, ... of it, where gates and locality change fastest), the rest evenly spread."""
    num_early = points // 3
    early = {round(steps_per_epoch * 2.0 ** -k) for k in range(num_early)}
    num_even = points - num_early
    even = {round(total * (i + 1) / num_even) for i in range(num_even)}
    return sorted({0, total} | {s for s in early | even if 0 < s <= total})


def _environment(device: torch.device, world: int) -> dict:
    return {
        "python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "processes": world,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


def _save_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)  # atomic: an interrupted write never leaves half a file


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    inner = model.module if hasattr(model, "module") else model
    return {k: v.detach().contiguous().cpu() for k, v in inner.state_dict().items()}


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters training changes (all of them from scratch; bypasses and head when adapting), fp16."""
    return {k: v.detach().half().contiguous().cpu() for k, v in model.named_parameters() if v.requires_grad}


def train(config: TrainConfig, progress: bool = True, until_step: int | None = None) -> dict:
    """Run (or resume) one training run; returns the history.

    `until_step` stops early after that step, with a checkpoint, so that a later call resumes from it (for
    machines lent by the hour); it does not change the recipe.
    """
    rank, world = _distributed()
    device = _device(config.device, rank)
    out = Path(config.out)
    ckpt_dir = out / "checkpoint"
    torch.manual_seed(config.seed)

    spec = dataset_spec(config.data)
    geometry = {"base_size": spec.base_size, "pad": spec.pad}
    train_set, test_set = spec.load(config.data_root, config.seed)
    if config.shots:
        train_set = train_set.subset(k_shot_subset(train_set.labels, config.shots, config.seed))
    elif config.fraction < 1.0:
        train_set = train_set.subset(fraction_subset(train_set.labels, config.fraction))
    val_set = None
    if config.val_images:
        kept, held = validation_split(train_set.labels, config.val_images, config.seed)
        train_set, val_set = train_set.subset(kept), train_set.subset(held)
    pixels = train_set.images.float() / 255.0
    norm = (round(pixels.mean().item(), 4), round(pixels.std().item(), 4))

    model = build_model(config, num_classes=len(train_set.classes)).to(device)
    per_rank = config.batch // world
    if per_rank * world != config.batch:
        raise ValueError(f"batch {config.batch} does not split evenly over {world} processes")
    steps_per_epoch = max(1, len(train_set) // config.batch)
    total = config.steps or max(1, round(config.epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay, config.gpsa_lr_scale,
                                                config.gpsa_weight_decay), lr=config.lr,
                                  eps=1e-8)
    history = {
        "config": asdict(config), "environment": _environment(device, world),
        "data": {"train_images": len(train_set), "test_images": len(test_set), "classes": train_set.classes,
                 "val_images": len(val_set) if val_set is not None else 0,
                 "normalisation": {"mean": norm[0], "std": norm[1]}, "fraction": config.fraction,
                 "shots": config.shots, "input_size": spec.input_size, **geometry},
        "augmentation": asdict(spec.augmentation),
        "architecture": architecture_record(config, len(train_set.classes)),
        "parameters": {"total": sum(p.numel() for p in model.parameters()),
                       "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)},
        "steps": total, "steps_per_epoch": steps_per_epoch, "batch_per_process": per_rank, "entries": [],
    }
    if gpsa_gates(model) and config.gate_grad_batches:
        history["gate_grad"] = {}  # "init" and "end": gate_gradients() at step 0 and at the last step
    # Σ of the learning rate each group was really stepped with (a gate's reach under Adam is about its Σlr)
    lr_sum = {group["name"]: 0.0 for group in optimizer.param_groups}
    step, wall_offset = 0, 0.0
    if (ckpt_dir / "state.json").is_file():  # resume
        state = json.loads((ckpt_dir / "state.json").read_text())
        # options added since the run started count as their defaults (older runs resume under newer code)
        defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
        if {**defaults, **state["config"]} != {**defaults, **asdict(config)}:
            raise ValueError(f"{out} holds a run with another configuration; use a new --out")
        model.load_state_dict(load_file(str(ckpt_dir / "model.safetensors")))
        optimizer.load_state_dict(torch.load(ckpt_dir / "optimizer.pt", map_location=device, weights_only=True))
        history = json.loads((out / "history.json").read_text())
        step, wall_offset, lr_sum = state["step"], state["wall_time"], state["lr_sum"]
        if (ckpt_dir / "rng.pt").is_file():
            torch.set_rng_state(torch.load(ckpt_dir / "rng.pt", weights_only=True))  # dropout, drop path
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    inner = model.module if world > 1 else model

    probe = prepare(test_set.images[:config.probe_size], inner.patch_embed.proj.in_channels, *norm,
                    train=False, **geometry).to(device)
    last_recorded = history["entries"][-1]["step"] if history["entries"] else -1
    evals = [s for s in eval_steps(total, steps_per_epoch, config.eval_points) if s >= step and s > last_recorded]
    stop = min(total, until_step) if until_step is not None else total
    in_chans = inner.patch_embed.proj.in_channels
    started = time.perf_counter() - wall_offset
    window_loss, window_count, window_images, window_start = 0.0, 0, 0, time.perf_counter()
    last_checkpoint = time.perf_counter()
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=step, desc=f"{config.method} on {config.data}", unit="step", dynamic_ncols=True)

    def save_checkpoint(wall_time: float) -> None:
        nonlocal last_checkpoint
        last_checkpoint = time.perf_counter()
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_file(_state_dict(model), str(ckpt_dir / "model.safetensors"))
        torch.save(optimizer.state_dict(), ckpt_dir / "optimizer.pt")
        torch.save(torch.get_rng_state(), ckpt_dir / "rng.pt")
        _save_json(out / "history.json", history)
        _save_json(ckpt_dir / "state.json", {"step": step, "wall_time": wall_time, "lr_sum": lr_sum,
                                             "config": asdict(config)})

    def diagnostic_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The same augmented training batches at every call, from a generator of their own (not the run's)."""
        generator = torch.Generator().manual_seed(config.seed * 1_000_033 + 17)
        for _ in range(config.gate_grad_batches):
            idx = torch.randperm(len(train_set), generator=generator)[:config.batch]
            x = prepare(train_set.images[idx], in_chans, *norm, train=True, generator=generator,
                        augmentation=spec.augmentation, **geometry)
            yield x.to(device), train_set.labels[idx].to(device)

    def record() -> None:
        nonlocal window_loss, window_count, window_images, window_start
        elapsed = time.perf_counter() - window_start
        scored = test_set if step in (0, total) or not config.eval_images else test_set.subset(
            torch.arange(min(config.eval_images, len(test_set))))
        entry = {
            "step": step, "epoch": step / steps_per_epoch, "lr": learning_rate(step, total, config),
            "lr_sum": dict(lr_sum),
            "train_loss": window_loss / window_count if window_count else None,
            "test_accuracy": evaluate(inner, scored, norm, device, config.eval_batch, **geometry),
            "test_images": len(scored),
            **({"val_accuracy": evaluate(inner, val_set, norm, device, config.eval_batch, **geometry)}
               if val_set is not None else {}),
            "images_per_s": window_images / elapsed if window_images else None,
            "wall_time": time.perf_counter() - started,
            **dynamics(inner, probe, config.eval_batch),
        }
        history["entries"].append(entry)
        if config.snapshots:
            (out / "snapshots").mkdir(parents=True, exist_ok=True)
            save_file(_snapshot(inner), str(out / "snapshots" / f"step{step:06d}.safetensors"))
        save_checkpoint(entry["wall_time"])
        if bar is not None:
            bar.set_postfix(loss=f"{entry['train_loss'] or float('nan'):.3f}", acc=f"{entry['test_accuracy']:.3f}",
                            img_s=f"{entry['images_per_s'] or 0:.0f}")
        window_loss, window_count, window_images = 0.0, 0, 0
        window_start = time.perf_counter()

    while True:
        if evals and step == evals[0]:
            evals.pop(0)
            if rank == 0:
                if "gate_grad" in history and step in (0, total):
                    began = time.perf_counter()
                    history["gate_grad"]["init" if step == 0 else "end"] = {
                        "step": step, **gate_gradients(inner, diagnostic_batches(), config.label_smoothing)}
                    window_start += time.perf_counter() - began  # not training time: keep images/s honest
                record()
            if world > 1:
                dist.barrier()
        if step >= stop:
            if step < total and rank == 0:
                save_checkpoint(time.perf_counter() - started)
            break
        # Every process draws and augments the same global batch and keeps its own slice of it, so that the
        # run is the same recipe whatever the number of processes.
        epoch, position = divmod(step, steps_per_epoch)
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
        batch_idx = order[position * config.batch:(position + 1) * config.batch]
        augment = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        x = prepare(train_set.images[batch_idx], in_chans, *norm, train=True, generator=augment,
                    augmentation=spec.augmentation, **geometry)[mine].to(device)
        y = train_set.labels[batch_idx][mine].to(device)
        lr = learning_rate(step, total, config)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        model.train()
        loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for group in optimizer.param_groups:
            lr_sum[group["name"]] += group["lr"]
        step += 1
        if rank == 0 and time.perf_counter() - last_checkpoint > CHECKPOINT_SECONDS and step not in evals:
            save_checkpoint(time.perf_counter() - started)
        window_loss += loss.item()
        window_count += 1
        window_images += len(batch_idx)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if rank == 0 and step >= total:
        save_file(_state_dict(model), str(out / "model.safetensors"))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return history
