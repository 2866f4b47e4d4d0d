"""Weights files are vetted before a byte is decompressed or unpickled, and their names and shapes must fit the
model before a tensor is read (petl_core.checkpoint)."""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from petl_core import zoo
from petl_core.checkpoint import (
    CheckpointError,
    check_weights_file,
    load_checkpoint,
    read_state_dict,
    tensor_shapes,
)

ROOT = Path(__file__).resolve().parents[1]
HUB_DEIT = "deit_tiny_patch16_224.fb_in1k"


def _saved(path: Path) -> Path:
    torch.save({"state_dict": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}}, path)
    return path


def test_torch_save_and_safetensors_files_pass_and_load(tmp_path):
    assert set(read_state_dict(_saved(tmp_path / "w.pth"))) == {"w", "b"}
    save_file({"w": torch.zeros(3)}, str(tmp_path / "w.safetensors"))
    assert torch.equal(read_state_dict(tmp_path / "w.safetensors")["w"], torch.zeros(3))


def test_deflated_member_is_refused_before_it_is_inflated(tmp_path):
    source = _saved(tmp_path / "w.pth")
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(bomb, "w") as out:
        for item in original.infolist():
            data = bytes(256 << 20) if item.filename.endswith("data/0") else original.read(item)
            out.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    with pytest.raises(CheckpointError, match="bomb.pth holds compressed members"):
        read_state_dict(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20


def test_declared_sizes_larger_than_the_file_are_refused(tmp_path):
    path = _saved(tmp_path / "w.pth")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        member = next(m for m in archive.infolist() if m.filename.endswith("data/0"))
    # the central directory entry of that member: its uncompressed size sits 24 bytes after the signature
    entry = data.find(b"PK\x01\x02")
    while entry != -1:
        name_length = struct.unpack_from("<H", data, entry + 28)[0]
        if data[entry + 46:entry + 46 + name_length].decode() == member.filename:
            struct.pack_into("<I", data, entry + 24, 1 << 31)
            break
        entry = data.find(b"PK\x01\x02", entry + 4)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="declares more data than the file holds"):
        check_weights_file(path)


def test_other_hostile_files(tmp_path):
    cases = {
        "empty.pt": (b"", "empty.pt is empty"),
        "legacy.pth": (b"\x80\x02}q\x00.", "not a PyTorch weights archive"),
        "header.safetensors": (struct.pack("<Q", 1 << 40) + b"{}", "its header is missing, larger than the file"),
        "short.safetensors": (b"\x01\x02", "its header is missing"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=message):
            read_state_dict(tmp_path / name)
    with pytest.raises(CheckpointError, match=r"big.pth is \d+ MiB; the limit is 0 MiB"):
        check_weights_file(_saved(tmp_path / "big.pth"), max_bytes=10)
    with pytest.raises(CheckpointError, match="^weights file not found: gone.pth$"):  # the name, not the path
        check_weights_file(tmp_path / "gone.pth")


def test_non_finite_tensors_are_named(tmp_path):
    save_file({"a": torch.zeros(2), "b": torch.tensor([1.0, float("inf")])}, str(tmp_path / "inf.safetensors"))
    model = torch.nn.Module()
    model.register_buffer("a", torch.zeros(2))
    model.register_buffer("b", torch.zeros(2))
    with pytest.raises(CheckpointError, match=r"inf.safetensors holds NaN or infinite values in 1 of 2 tensors "
                                              r"\(first: b\)"):
        load_checkpoint(model, tmp_path / "inf.safetensors")
    assert torch.equal(model.b, torch.zeros(2))  # nothing was loaded


# --------------------------------------------------------------------------------------------------- names and shapes
_PEAK_MB = """
def peak_mb():  # this process's own high-water mark: ru_maxrss would start at the parent's (kept across exec)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
try:
    open("/proc/self/clear_refs", "w").write("5")  # the high-water mark starts again from the current RSS
except OSError:
    pass
"""
needs_proc = pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak memory is read from /proc")


def _refusal_in_a_fresh_process(setup: str, call: str) -> tuple[str | None, float, float]:
    """(the CheckpointError's message or None, growth of the peak RSS in MB, seconds) of `call`, run after `setup`
    in a fresh Python, whose peak memory is this call's alone."""
    code = "\n".join([
        setup, "import json, time", "from petl_core.checkpoint import CheckpointError", _PEAK_MB,
        "before = peak_mb()", "start = time.perf_counter()",
        "try:", f"    {call}", "    message = None", "except CheckpointError as e:", "    message = str(e)",
        "seconds = time.perf_counter() - start", "print(json.dumps([message, peak_mb() - before, seconds]))",
    ])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})  # the hub is never asked
    assert result.returncode == 0, result.stderr[-3000:]
    message, growth_mb, seconds = json.loads(result.stdout.splitlines()[-1])
    return message, growth_mb, seconds


def _patch_kernel(path: Path) -> Path:
    """A 90 KB file holding one 150×150 patch kernel: timm's pretrained loader resamples it to the model's 16×16
    through an identity matrix of 150⁴ floats (2 GB; 6.4 GB at 200×200)."""
    kernel = {"patch_embed.proj.weight": torch.zeros(1, 1, 150, 150)}
    save_file(kernel, str(path)) if path.suffix == ".safetensors" else torch.save(kernel, path)
    return path


@needs_proc
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_hub_architecture_refuses_a_tensor_of_another_shape_before_any_library_adapts_it(tmp_path, suffix):
    path = _patch_kernel(tmp_path / f"kernel{suffix}")
    message, growth_mb, seconds = _refusal_in_a_fresh_process(
        "from petl_core import zoo", f"zoo.load({HUB_DEIT!r}, file={str(path)!r})")
    assert message == (f"kernel{suffix} does not hold weights of {HUB_DEIT}: 1 tensors of another shape (file vs "
                       f"model: patch_embed.proj.weight (1, 1, 150, 150) vs (192, 3, 16, 16)); 151 missing "
                       f"(e.g. cls_token)")
    assert growth_mb < 50, f"the peak memory grew by {growth_mb:.0f} MB for a 90 KB file"
    assert seconds < 5


def test_a_shipped_architecture_refuses_the_same_file_in_the_same_sentence(tmp_path):
    path = _patch_kernel(tmp_path / "kernel.safetensors")
    pattern = (r"^kernel.safetensors does not fit this architecture: 1 tensors of another shape \(file vs model: "
               r"patch_embed.proj.weight \(1, 1, 150, 150\) vs \(\d+, 1, 4, 4\)\); \d+ missing \(e.g. cls_token\)$")
    with pytest.raises(CheckpointError, match=pattern):
        zoo.load("deit_scenes", file=path)
    with pytest.raises(CheckpointError, match=r"^kernel.safetensors does not fit this architecture: 1 tensors of "
                                              r"another shape \(file vs model: patch_embed.proj.weight \(1, 1, 150, "
                                              r"150\) vs \(192, 3, 16, 16\)\)"):
        zoo.load_local(path, "deit_tiny_patch16_224")


@needs_proc
def test_a_pytorch_file_of_another_shape_is_refused_with_its_data_unread(tmp_path):
    path = tmp_path / "big.pth"
    torch.save({"model": {"module.weight": torch.ones(4096, 4096), "module.bias": torch.ones(4)}}, path)  # 64 MiB
    setup = "import torch\nfrom petl_core.checkpoint import load_checkpoint\nmodel = torch.nn.Linear(4, 4)"
    message, growth_mb, _ = _refusal_in_a_fresh_process(setup, f"load_checkpoint(model, {str(path)!r})")
    assert message == ("big.pth does not fit this architecture: 1 tensors of another shape (file vs model: weight "
                       "(4096, 4096) vs (4, 4))")
    assert growth_mb < 32, f"the peak memory grew by {growth_mb:.0f} MB: the 64 MiB tensor was read"


def test_tensor_shapes_of_a_shipped_file_are_its_state_dict_shapes(tmp_path):
    path = ROOT / "assets" / "models" / "deit_scenes" / "model.safetensors"
    state = zoo.load("deit_scenes").model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert tensor_shapes(path) == shapes == {k: tuple(v.shape) for k, v in read_state_dict(path).items()}
    wrapped = tmp_path / "wrapped.pth"  # a training checkpoint's layout: read_state_dict's unwrapping, unread
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, wrapped)
    assert tensor_shapes(wrapped) == shapes
    header = json.loads(path.read_bytes()[8:8 + struct.unpack("<Q", path.read_bytes()[:8])[0]])
    assert set(header) - set(shapes) <= {"__metadata__"}


@pytest.mark.parametrize("header", [b"not json", b"[1, 2]", b'{"w": {"dtype": "F32", "shape": [2, -1]}}',
                                    b'{"w": {"dtype": "F32", "shape": [true]}}', b'{"w": 3}', b"[" * 100_000,
                                    b'{"w": {"shape": [' + b"9" * 5000 + b"]}}"])
def test_a_safetensors_header_that_is_not_a_table_of_tensors_is_refused(tmp_path, header):
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match="^odd.safetensors is not a readable safetensors file: its header is "
                                              "not a table of tensors$"):
        load_checkpoint(torch.nn.Linear(2, 2), path)
