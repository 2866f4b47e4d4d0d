"""Files a request names: only regular files inside Gradio's upload folder or the shipped examples, read with a
byte limit.

A caller of the API can send any JSON for a file parameter, e.g. `{"path": "/etc/passwd"}` without Gradio's
`meta` marker, which skips Gradio's own upload-folder check. So every input's `preprocess` is wrapped (by
`app.guard` for all inputs, by `guard_files` with the limit of its kind for images, sketches and weights): each
path in the payload is resolved (symlinks and `..` followed) and must name a regular file under an allowed root
and within the size limit, before Gradio or the app opens it. Every path that fails gets the same message, so the
answers say nothing about the server's other files.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder
from PIL import Image, UnidentifiedImageError

from petl_core.checkpoint import MAX_WEIGHTS_BYTES

__all__ = ["EXAMPLES", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "MAX_WEIGHTS_BYTES", "NOT_UPLOADED", "allowed_file",
           "check_paths", "guard_files", "read_upload"]

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
MAX_IMAGE_BYTES = 20 * 2**20
"""Largest image file accepted (20 MiB); weights files may be up to MAX_WEIGHTS_BYTES (hub ViT-B is 330 MB)."""
MAX_IMAGE_PIXELS = 25_000_000
"""Largest upload in pixels (a 25-megapixel photo), refused from its header (decompression bombs included): stricter
than petl_core.images.MAX_PIXELS, the library's default for one local user, as a public server decodes for all."""

NOT_UPLOADED = "This file was not uploaded to this app: upload it through the page (or the API's upload route) first."


def _roots() -> list[Path]:
    return [Path(get_upload_folder()).resolve(), EXAMPLES]


def _size_text(size: int) -> str:
    return f"{size / 2**20:.0f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"


def allowed_file(path: str | os.PathLike, max_bytes: int, what: str = "file") -> Path:
    """The resolved `path` when it is a regular file under the upload folder or the examples and at most
    `max_bytes` long; else gr.Error (the same sentence for every path outside, so nothing about it leaks)."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError, TypeError):
        raise gr.Error(NOT_UPLOADED) from None
    if not any(resolved.is_relative_to(root) for root in _roots()):
        raise gr.Error(NOT_UPLOADED)
    try:
        info = resolved.stat()
    except OSError:
        raise gr.Error("That upload is no longer on the server (uploads are deleted after a while): upload the "
                       "file again.") from None
    if not stat.S_ISREG(info.st_mode):
        raise gr.Error(NOT_UPLOADED)
    if info.st_size > max_bytes:
        raise gr.Error(f"This {what} is {_size_text(info.st_size)}; the limit is {_size_text(max_bytes)}.")
    return resolved


def read_upload(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of an allowed file, never more than `max_bytes` (a file that grows while read is refused)."""
    resolved = allowed_file(path, max_bytes, what)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError:
        raise gr.Error("That upload is no longer on the server: upload the file again.") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):  # swapped for a device or a pipe since the check
            raise gr.Error(NOT_UPLOADED)
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise gr.Error(f"This {what} is larger than {_size_text(max_bytes)}, the limit.")
    return data


def check_paths(payload: Any, max_bytes: int, what: str = "file") -> None:
    """`allowed_file` for every file path in a component's payload (FileData, ImageData, EditorData, lists)."""
    for path in _paths(payload):
        allowed_file(path, max_bytes, what)


def _paths(payload: Any) -> Iterator[str]:
    """Every file path in a component's payload (FileData, ImageData, EditorData, lists of them)."""
    value = payload.model_dump() if hasattr(payload, "model_dump") else payload
    if isinstance(value, dict):
        if isinstance(value.get("path"), str):
            yield value["path"]
        for item in value.values():
            if isinstance(item, (dict, list)):
                yield from _paths(item)
    elif isinstance(value, list):
        for item in value:
            yield from _paths(item)


def _image_errors(error: Exception) -> gr.Error:
    """Gradio opens image uploads with Pillow before any handler runs, and reports its failures as a bare
    'Error': say what is wrong instead."""
    if isinstance(error, UnidentifiedImageError):
        return gr.Error("This file is not an image (or a format Pillow cannot read).")
    if isinstance(error, Image.DecompressionBombError):
        return gr.Error("This image is too large: its pixel count is over Pillow's decompression-bomb limit.")
    return gr.Error("This image is truncated or corrupt.")


def _check_pixels(path: str, max_pixels: int) -> None:
    """Refuse an image over `max_pixels` from its header alone (Pillow reads no pixel data to open it)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise _image_errors(e) from None
    if width * height > max_pixels:
        raise gr.Error(f"This image is {width}x{height} pixels; the limit is {max_pixels:,} pixels.")


def guard_files(component: gr.components.Component, max_bytes: int, what: str,
                max_pixels: int | None = None) -> gr.components.Component:
    """Check every path a request gives `component` (see `allowed_file`; with `max_pixels`, also the image size
    in its header) before its own preprocess opens it, and the path it hands on after (a base64 image becomes a
    cache file); say what is wrong with a bad image. (Wrapped per instance: a subclass would make Gradio write a
    .pyi stub beside this file.)"""
    preprocess = component.preprocess

    def checked(payload):
        check_paths(payload, max_bytes, what)
        if max_pixels:  # Gradio decodes sketches and display images in full before any handler sees them
            for path in _paths(payload):
                _check_pixels(path, max_pixels)
        try:
            value = preprocess(payload)
        except gr.Error:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
            raise _image_errors(e) from None
        if isinstance(value, str):
            allowed_file(value, max_bytes, what)
        return value

    component.preprocess = checked
    return component
