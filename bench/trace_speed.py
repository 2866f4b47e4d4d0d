"""How much does `petl_core.trace` cost next to timm's own ConViT or DeiT? A benchmark, not a test.

Measured side by side in one run, on the same inputs and the same weights (our model's state dict is loaded,
strictly, into the timm models), for `convit_tiny` (or `--model deit_tiny_patch16_224`) at 224×224:

1. timm plain        `timm.create_model("convit_tiny")` forward, eval, no_grad;
2. timm extract      `timm.utils.AttentionExtract(model, method="hook")` on a second timm model, which returns
                     the 12 attention maps (B, H, N, N) through forward hooks on every `attn_drop`;
3. ours plain        `petl_core.create_model("convit_tiny")` forward, untraced (fused attention path);
4. ours trace        `petl_core.trace(model, x)`: logits plus every block's attention, GPSA content and
                     positional parts and gates.

Timing: median wall time of one call over `--reps` repetitions after a warm-up. Each repetition calls every
method once, round-robin, starting from a different method each time, so machine drift (other processes,
thermal state) hits all methods alike. A call's time includes dropping its result (freeing a trace's tensors
is part of what serving one costs). "× timm plain" is the median over repetitions of (method / timm plain) within
the same repetition, a paired ratio that cancels drift better than dividing two medians.

CPU tables, torch.set_num_threads(number of usable cores):
* "default glibc allocator": timed in this process;
* "retain_freed_memory()": timed in a child process that called `petl_core.runtime.retain_freed_memory()`
  before anything else (the glibc setting is process-wide and cannot be undone).
Both processes do the same things in the same order (build the models, then each batch in turn): glibc's
default mmap threshold adapts to the block sizes freed so far, so default-allocator numbers depend on what the
process ran before (one batch-2 forward first is enough to hide batch 1's page faults).

CPU memory (Linux only): every (method, batch) runs in its own child process, which builds the models, calls
the method once (that first call pages in libtorch code and fills per-model caches, which belong to the
process rather than to each call), hands glibc's free heap back (malloc_trim) and resets the kernel's peak-RSS
mark (/proc/self/clear_refs). "peak Δ" is the peak RSS (VmHWM; see `peak_rss_kb` for why not ru_maxrss)
after MEMORY_CALLS more calls minus the RSS (/proc/self/statm) right before them: the extra resident memory
one call needs, allocator slack included.
"held Δ" is the RSS left after those calls over the same baseline: what the allocator keeps between calls.
A value marked ≤ is an upper bound: the peak mark could not be reset and the calls did not pass it.

CUDA (when available and asked for): timed with torch.cuda.synchronize() around each call; "peak Δ" is
torch.cuda.max_memory_allocated() during MEMORY_CALLS calls, after warm-up, minus the memory allocated
before them (first-call caches and cuBLAS workspaces excluded).

Run from the repository root (about 3 minutes on 2 CPU cores):

    python bench/trace_speed.py                    # CPU tables, plus CUDA if available
    python bench/trace_speed.py --markdown         # the same as Markdown tables, for the README
    python bench/trace_speed.py --reps 50 --batches 1 8 32 --device cuda
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/trace_speed.py` from anywhere

import timm  # noqa: E402
import torch  # noqa: E402
from timm.utils import AttentionExtract  # noqa: E402

import petl_core  # noqa: E402
from petl_core.runtime import retain_freed_memory  # noqa: E402

MODEL = "convit_tiny"
"""The model timed (--model): ConViT, or the plain DeiT whose trace must materialise the attention timm fuses."""
MODELS = ("convit_tiny", "deit_tiny_patch16_224")
METHODS = ("timm plain", "timm extract", "ours plain", "ours trace")
BASELINE = "timm plain"
DEFAULT_REPS = 40
WARMUP_CALLS = 2  # per method and batch, before any timed call
MEMORY_CALLS = 3  # calls per memory child (the first one included)
SEED = 0
MIB = 1 << 20

Call = Callable[[torch.Tensor], object]


def log(message: str, started: float) -> None:
    """Progress on stderr, so stdout stays the report."""
    print(f"[{time.perf_counter() - started:5.0f} s] {message}", file=sys.stderr, flush=True)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects taskset/cgroup pinning, unlike os.cpu_count()
    except AttributeError:
        return os.cpu_count() or 1


def build_methods(device: torch.device, only: str | None = None) -> dict[str, Call]:
    """The four callables, sharing one set of weights. `only` builds just what that method needs."""
    torch.manual_seed(SEED)  # same weights in every process, so parent and children measure the same model
    ours = petl_core.create_model(MODEL).eval()
    state = ours.state_dict()

    def timm_model() -> torch.nn.Module:
        model = timm.create_model(MODEL).eval()
        model.load_state_dict(state)  # strict: proves the instrumented model kept timm's keys
        return model.to(device)

    methods: dict[str, Call] = {}
    if only in (None, "timm plain"):
        methods["timm plain"] = timm_model()
    if only in (None, "timm extract"):
        # A separate timm instance: AttentionExtract registers hooks on the model it wraps for good, and they
        # would slow "timm plain" down too if both shared one.
        extracted = timm_model()
        for module in extracted.modules():  # DeiT: timm's fused attention never calls the hooked attn_drop
            if hasattr(module, "fused_attn"):
                module.fused_attn = False
        methods["timm extract"] = AttentionExtract(extracted, method="hook")
    if only in (None, "ours plain", "ours trace"):
        ours = ours.to(device)
        if only in (None, "ours plain"):
            methods["ours plain"] = ours
        if only in (None, "ours trace"):
            methods["ours trace"] = lambda x: petl_core.trace(ours, x)
    return methods


def make_input(batch: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(SEED + batch)  # identical images in every process
    return torch.randn(batch, 3, 224, 224, generator=generator).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_agreement(methods: dict[str, Call], device: torch.device) -> str:
    """One line proving the four methods compute the same thing on the same weights."""
    x = make_input(2, device)
    with torch.no_grad():
        ref = methods["timm plain"](x)
        ours = methods["ours plain"](x)
        t = methods["ours trace"](x)
        extracted = list(methods["timm extract"](x).values())
    logits_diff = max((ours - ref).abs().max().item(), (t.logits - ref).abs().max().item())
    if len(extracted) != len(t.attention):
        raise RuntimeError(f"AttentionExtract found {len(extracted)} maps, trace {len(t.attention)}")
    attn_diff = max((a - b).abs().max().item() for a, b in zip(extracted, t.attention, strict=True))
    return (f"check: max |logits - timm| = {logits_diff:.1e}, max |trace attention - AttentionExtract| = "
            f"{attn_diff:.1e} over {len(extracted)} blocks")


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def time_methods(methods: dict[str, Call], batches: Sequence[int], reps: int, device: torch.device) -> dict:
    """All methods interleaved: {"samples": {str(batch): {method: [seconds per call]}}, "load": [before, after]}."""
    names = list(methods)
    samples: dict[str, dict[str, list[float]]] = {}
    load_before = load_average()
    with torch.no_grad():
        for batch in batches:
            x = make_input(batch, device)
            for name in names:
                for _ in range(WARMUP_CALLS):
                    methods[name](x)
            sync(device)
            times: dict[str, list[float]] = {name: [] for name in names}
            for rep in range(reps):
                # Rotate the start so no method always runs right after the same one (cache, allocator state).
                for name in names[rep % len(names):] + names[:rep % len(names)]:
                    fn = methods[name]
                    sync(device)
                    start = time.perf_counter()
                    fn(x)  # the result is dropped (and freed) inside the timed region
                    sync(device)
                    times[name].append(time.perf_counter() - start)
            samples[str(batch)] = times
    # The load average flags runs that shared the cores: one busy process makes torch's threads wait on each other.
    return {"samples": samples, "load": [load_before, load_average()]}


def cuda_memory(methods: dict[str, Call], batches: Sequence[int], device: torch.device) -> dict[str, dict]:
    """{str(batch): {method: {"peak": bytes}}} of extra CUDA memory during MEMORY_CALLS warm calls."""
    result: dict[str, dict] = {}
    with torch.no_grad():
        for batch in batches:
            x = make_input(batch, device)
            result[str(batch)] = {}
            for name, fn in methods.items():
                fn(x)  # warm: first-call caches stay out of the number
                gc.collect()
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
                for _ in range(MEMORY_CALLS):
                    fn(x)
                torch.cuda.synchronize(device)
                result[str(batch)][name] = {"peak": torch.cuda.max_memory_allocated(device) - before}
    return result


# --- CPU memory, one child process per (method, batch) ------------------------------------------------------


def current_rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM), in KB.

    Not resource.getrusage().ru_maxrss: Linux folds the RSS of the process image that exec replaced into it,
    so a child started by subprocess reports its parent's peak (about 1 GB here) until it outgrows it.
    VmHWM is the same kernel counter for this image alone, and /proc/self/clear_refs can reset it.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux; only if VmHWM is missing


def release_free_heap() -> None:
    """Hand glibc's free heap back so build garbage cannot silently absorb the calls' allocations."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> None:
    """Reset this process's peak-RSS mark (VmHWM) to the current RSS, where allowed (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def memory_child(method: str, batch: int) -> dict:
    """Runs in a fresh process: peak and held RSS increase over the built model, in KB."""
    methods = build_methods(torch.device("cpu"), only=method)
    fn = methods[method]
    x = make_input(batch, torch.device("cpu"))
    with torch.no_grad():
        # The first call pages in tens to hundreds of MB of libtorch code and builds per-model caches (GPSA's
        # positional attention, timm's rel_indices); both belong to the process, not to each call.
        fn(x)
        gc.collect()
        release_free_heap()
        reset_peak_rss()
        baseline = current_rss_kb()
        peak_before = peak_rss_kb()
        for _ in range(MEMORY_CALLS):
            fn(x)
        peak = peak_rss_kb()
    # If the mark was not reset, an earlier peak that the calls never passed hides the calls' own peak.
    upper_bound = peak_before > baseline + 1024 and peak == peak_before
    return {"peak": peak - baseline, "held": current_rss_kb() - baseline, "upper_bound": upper_bound}


def run_child(args: list[str]) -> dict:
    """Run this script in a child process with hidden args; it prints one JSON line last."""
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--model", MODEL, *args],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_memory(batches: Sequence[int], retain: bool) -> dict[str, dict]:
    """{str(batch): {method: {"peak", "held" in KB, "upper_bound"}}}, one child process each."""
    if not sys.platform.startswith("linux"):
        return {}
    jobs = [(batch, name) for batch in batches for name in METHODS]
    extra = ["--_retain"] if retain else []
    # One at a time: two children each running torch.set_num_threads(cores) would oversubscribe the cores.
    results = [run_child(["--_memory", name, "--_batch", str(batch), *extra]) for batch, name in jobs]
    out: dict[str, dict] = {}
    for (batch, name), res in zip(jobs, results, strict=True):
        out.setdefault(str(batch), {})[name] = res
    return out


# --- report ------------------------------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    samples: dict[str, dict[str, list[float]]]
    memory: dict[str, dict] = field(default_factory=dict)
    memory_unit: str = "KB"  # "KB" (CPU RSS) or "B" (CUDA allocator)
    load: list[float | None] = field(default_factory=list)  # 1-minute load average before and after timing

    @classmethod
    def timed(cls, title: str, result: dict, memory_unit: str = "KB") -> Table:
        return cls(title, result["samples"], memory_unit=memory_unit, load=result["load"])

    def load_note(self) -> str:
        if None in self.load or not self.load:
            return ""
        return f"1-minute load average {self.load[0]:.2f} before timing, {self.load[1]:.2f} after"

    def ratio(self, batch: str, name: str) -> float:
        """Median over repetitions of this method's time over timm plain's in the same repetition."""
        times, ref = self.samples[batch][name], self.samples[batch][BASELINE]
        return statistics.median(t / r for t, r in zip(times, ref, strict=True))

    def rows(self) -> list[list[str]]:
        rows = []
        for batch, per_method in self.samples.items():
            for name, times in per_method.items():
                q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
                row = [batch, name, f"{statistics.median(times) * 1e3:.1f}", f"{q1 * 1e3:.1f}–{q3 * 1e3:.1f}",
                       f"{self.ratio(batch, name):.3f}"]
                mem = self.memory.get(batch, {}).get(name)
                scale = 1024 if self.memory_unit == "KB" else MIB
                if mem is None:
                    row += ["n/a", "n/a"]
                else:
                    bound = "≤ " if mem.get("upper_bound") else ""
                    row.append(f"{bound}{mem['peak'] / scale:.1f}")
                    row.append(f"{mem['held'] / scale:.1f}" if "held" in mem else "–")
                rows.append(row)
        return rows

    def summary(self) -> str:
        parts = [f"batch {b}: {self.ratio(b, 'ours trace'):.3f}" for b in self.samples]
        return f"trace / timm plain [{self.title}]: " + ", ".join(parts)


HEADER = ["batch", "method", "median ms", "p25–p75 ms", "× timm plain", "peak Δ MiB", "held Δ MiB"]


def render(table: Table, markdown: bool) -> str:
    rows, note = table.rows(), table.load_note()
    if markdown:
        lines = [f"**{table.title}**", "", "| " + " | ".join(HEADER) + " |",
                 "|" + "|".join("---" if i == 1 else "---:" for i in range(len(HEADER))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines += ["", note] if note else []
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    lines = [table.title, fmt(HEADER), "  ".join("-" * w for w in widths), *map(fmt, rows)]
    lines += [note] if note else []
    return "\n".join(lines)


# --- entry points ------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS, help="timed repetitions per method and batch")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="auto: CPU tables, plus a CUDA table when torch.cuda.is_available()")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--model", choices=MODELS, default=MODEL, help="the timm model to time (at 224×224)")
    # Hidden: how the parent starts its child processes.
    parser.add_argument("--_memory", metavar="METHOD", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--_batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_timing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_retain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reps < 1 or min(args.batches) < 1:
        parser.error("--reps and --batches must be positive")
    return args


def child_main(args: argparse.Namespace) -> int:
    if args._retain and not retain_freed_memory():  # first, before torch allocates anything large
        print(json.dumps({"unsupported": "retain_freed_memory() needs glibc"}))
        return 0
    torch.set_num_threads(usable_cores())
    if args._memory:
        result = memory_child(args._memory, args._batch)
    else:
        result = time_methods(build_methods(torch.device("cpu")), args.batches, args.reps, torch.device("cpu"))
    print(json.dumps(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    global MODEL
    args = parse_args(argv)
    MODEL = args.model
    if args._memory or args._timing:
        return child_main(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    cores = usable_cores()
    torch.set_num_threads(cores)
    started = time.perf_counter()
    print(f"{MODEL}, 224×224, torch {torch.__version__}, timm {timm.__version__}, {cores} CPU threads, "
          f"reps={args.reps}, warm-up={WARMUP_CALLS} calls, batches={args.batches}")
    tables: list[Table] = []
    if args.device in ("cpu", "auto"):
        cpu = torch.device("cpu")
        methods = build_methods(cpu)
        log("timing on CPU, default glibc allocator (this process)", started)
        default = Table.timed("CPU, default glibc allocator", time_methods(methods, args.batches, args.reps, cpu))
        # Only after timing: glibc's mmap threshold adapts to the sizes freed so far, so a batch-2 forward before
        # the timed calls would make glibc keep batch 1's attention too and hide the page-fault cost measured here.
        # This way this process and the retain_freed_memory() child time the same history: build, then batches.
        print(check_agreement(methods, cpu), flush=True)
        del methods
        gc.collect()
        log("timing on CPU, retain_freed_memory() (child process)", started)
        result = run_child(["--_timing", "--_retain", "--reps", str(args.reps), "--batches", *map(str, args.batches)])
        tables.append(default)
        if "unsupported" in result:
            print(f"no retain_freed_memory() table: {result['unsupported']}")
        else:
            tables.append(Table.timed("CPU, retain_freed_memory()", result))
        # Memory children after all timing, so they never compete with a timed call for the cores.
        log("CPU memory, one child process per (method, batch)", started)
        for table, retain in zip(tables, (False, True), strict=False):  # no retain table without glibc
            table.memory = cpu_memory(args.batches, retain=retain)
    if args.device in ("cuda", "auto") and torch.cuda.is_available():
        gpu = torch.device("cuda")
        methods = build_methods(gpu)
        log("timing on CUDA", started)
        table = Table.timed(f"CUDA, {torch.cuda.get_device_name(gpu)}",
                            time_methods(methods, args.batches, args.reps, gpu), memory_unit="B")
        print(check_agreement(methods, gpu), f"on {torch.cuda.get_device_name(gpu)}", flush=True)
        table.memory = cuda_memory(methods, args.batches, gpu)
        tables.append(table)
    for table in tables:
        print()
        print(render(table, args.markdown))
    print()
    if tables and tables[0].memory_unit == "KB":
        print(f"CPU peak Δ: peak RSS (VmHWM) over {MEMORY_CALLS} calls minus the RSS right before them, in a fresh "
              f"child process per row, warmed up by one call first; held Δ: RSS after them minus that baseline.")
    if tables and tables[-1].memory_unit == "B":
        print(f"CUDA peak Δ: max_memory_allocated during {MEMORY_CALLS} warm calls minus memory allocated before.")
    for table in tables:
        print(table.summary())
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
