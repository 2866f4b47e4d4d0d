"""Weights files are vetted before a byte is decompressed or unpickled (petl_core.checkpoint)."""
from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from petl_core.checkpoint import CheckpointError, check_weights_file, load_checkpoint, read_state_dict


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
