"""petl_core: exact, instrumented ConViT, ViT/DeiT and Convpass models with one-pass capture.

Models are timm's own (same modules and state-dict keys); their attention modules are swapped for versions
that hand attention, GPSA content/positional parts and Convpass bypass outputs to `trace`.

>>> from petl_core import create_model, trace, metrics
>>> model = create_model("convit_tiny").eval()
>>> t = trace(model, images)
>>> metrics.nonlocality(t.attention[3], t.grid, t.num_prefix[3])   # (B, H) in patches
"""
from . import metrics
from .convpass import ConvpassConfig, add_convpass, load_convpass, save_convpass
from .models import HubUnavailableError, create_model, instrument
from .probe import Trace, trace

__all__ = [
    "ConvpassConfig",
    "HubUnavailableError",
    "Trace",
    "add_convpass",
    "create_model",
    "instrument",
    "load_convpass",
    "metrics",
    "save_convpass",
    "trace",
]
