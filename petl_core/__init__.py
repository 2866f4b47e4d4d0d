"""petl_core: exact, instrumented ConViT, ViT/DeiT and Convpass models with one-pass capture.

Models are timm's own (same modules and state-dict keys); their attention modules are swapped for versions
that hand attention, GPSA content/positional parts and Convpass bypass outputs to `trace`.

>>> from petl_core import create_model, trace, metrics
>>> model = create_model("convit_tiny").eval()
>>> t = trace(model, images)
>>> metrics.nonlocality(t.attention[3], t.grid, t.num_prefix[3])   # (B, H) in patches

The names below are imported on first use (PEP 562), so that the torch-free modules (`catalog`, `cards`, `errors`,
`curves`, `scales`, ...: tests/test_imports.py lists them) load without torch: a page that only lists the models
need not wait for it.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "ConvpassConfig": "convpass",
    "HubUnavailableError": "errors",
    "Trace": "probe",
    "add_convpass": "convpass",
    "create_model": "models",
    "instrument": "models",
    "load_convpass": "convpass",
    "metrics": None,
    "save_convpass": "convpass",
    "trace": "probe",
}
"""Each exported name and the module it lives in (None: the name is that module)."""

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{_EXPORTS[name] or name}", __name__)
    return module if _EXPORTS[name] is None else getattr(module, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
