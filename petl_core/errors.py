"""The errors petl_core raises for input it cannot use, each with a message meant for the user.

Torch-free, like the package's lazy exports (petl_core/__init__.py), so that a caller can catch them without
importing the models. Each is re-exported where it is raised (`petl_core.checkpoint.CheckpointError`, ...).
"""
from __future__ import annotations

__all__ = ["CheckpointError", "DatasetMissingError", "HubUnavailableError", "ImageError"]


class CheckpointError(ValueError):
    """A weights file that is missing, unreadable or does not fit the model, with a message for the user."""


class DatasetMissingError(FileNotFoundError):
    """A dataset's files are not where they should be; the message says how to get them."""


class HubUnavailableError(RuntimeError):
    """Pretrained weights were asked for but could not be fetched."""


class ImageError(ValueError):
    """An upload that cannot be used as an image, with a message meant for the user."""
