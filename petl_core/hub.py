"""timm weights from the Hugging Face hub: which the explorer offers (`HUB`), whether they can be had now (cached, or
the hub reachable: `hub_status`), and loading one (`load_hub`, also from a local copy of the weights file)."""
from __future__ import annotations

import os
import socket
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import torch
from timm.models import get_pretrained_cfg

from .analysis import class_names
from .building import Loaded
from .cards import NOT_MEASURED, ModelCard
from .checkpoint import CheckpointError, check_finite, check_weights_file, load_checkpoint
from .images import data_config, image_transform
from .models import HubUnavailableError, create_model

__all__ = ["HUB", "cached_weights", "hub_reachable", "hub_status", "load_hub", "offline"]

HUB: dict[str, dict] = {
    "convit_tiny.fb_in1k": dict(title="ConViT-Ti, ImageNet-1k (Facebook)", family="convit", data="ImageNet-1k",
                                blocks=12, heads=4),
    "convit_small.fb_in1k": dict(title="ConViT-S, ImageNet-1k (Facebook)", family="convit", data="ImageNet-1k",
                                 blocks=12, heads=9),
    "deit_tiny_patch16_224.fb_in1k": dict(title="DeiT-Ti/16, ImageNet-1k (Facebook)", family="vit",
                                          data="ImageNet-1k", blocks=12, heads=3),
    "deit_small_patch16_224.fb_in1k": dict(title="DeiT-S/16, ImageNet-1k (Facebook)", family="vit",
                                           data="ImageNet-1k", blocks=12, heads=6),
    "vit_base_patch16_224.orig_in21k": dict(title="ViT-B/16, ImageNet-21k (original, no classifier head): "
                                                  "a backbone for Convpass", family="vit", data="ImageNet-21k",
                                            convpass_ready=True, blocks=12, heads=12),
}
"""timm weights offered from the Hugging Face hub (or from a local copy of their file), with their architecture's
blocks and heads per block (timm's; tests/test_zoo.py checks them against a skeleton of each), so the app can size its
controls without building five models at start."""
TIMEOUT_S = 2.0
"""How long `hub_reachable` waits for a connection, DNS included."""


def offline() -> bool:
    """Whether the Hugging Face hub is switched off here (HF_HUB_OFFLINE)."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def cached_weights(name: str) -> str | None:
    """The path of `name`'s weights in the Hugging Face cache, if they were downloaded before."""
    from huggingface_hub import try_to_load_from_cache

    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        return None
    filenames = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
    for filename in filenames:
        path = try_to_load_from_cache(cfg.hf_hub_id, filename)
        if isinstance(path, str):
            return path
    return None


def hub_reachable(timeout: float = TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub (or the HTTPS proxy) opens within `timeout` seconds, DNS included."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_url = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname, proxy_url.port or 80
    opened: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=connect, daemon=True)  # a hanging DNS lookup cannot hold us past `timeout`
    probe.start()
    probe.join(timeout)
    return bool(opened)


def hub_status(name: str, reachable: bool | None = None) -> tuple[bool, str]:
    """(available, reason) for a hub entry: its weights are cached, or the hub can be reached now (`reachable`, when
    the caller already checked)."""
    if cached_weights(name):
        return True, ""
    if offline():
        return False, (f"{name} needs its weights from the Hugging Face hub, which is switched off here "
                       f"(HF_HUB_OFFLINE is set); pass a local weights file instead.")
    if reachable is None:
        reachable = hub_reachable()
    if not reachable:
        return False, (f"{name} needs its weights from the Hugging Face hub, which cannot be reached from here; "
                       f"pass a local weights file instead.")
    return True, ""


def _why_not(name: str, weights: Path, timm_kwargs: dict, error: BaseException) -> str:
    """One clause on why timm could not load `weights` as `name`: the file's tensors against the architecture's."""
    with torch.device("meta"):  # no memory, no init: only names and shapes matter
        skeleton = create_model(name, **timm_kwargs)
    try:
        load_checkpoint(skeleton, weights)
    except CheckpointError as e:
        return str(e).split(": ", 1)[-1]
    return " ".join(str(error).split())[:300] or type(error).__name__


def load_hub(name: str, file: str | Path | None, timm_kwargs: dict) -> Loaded:
    """The hub entry `name` with timm's pretrained weights: from `file` when given (a timm-format
    .safetensors/.pth), from the Hugging Face cache when they are there, else downloaded. HubUnavailableError at
    once when none of these can be had; CheckpointError when `file` does not hold these weights."""
    info = HUB[name]
    if file is not None:
        weights = check_weights_file(file)  # vetted before timm unzips or unpickles a byte of it
    else:
        cached = cached_weights(name)
        if cached is None:
            available, reason = hub_status(name)
            if not available:
                raise HubUnavailableError(reason)
        weights = Path(cached) if cached else None  # cached: read the file directly, no network at all
    if weights is None:
        model = create_model(name, pretrained=True, **timm_kwargs)
    else:
        try:
            model = create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)),
                                 **timm_kwargs)
        except Exception as e:  # timm and torch raise many kinds for a file that is not these weights
            cause = e.__cause__ if isinstance(e, HubUnavailableError) and e.__cause__ else e
            why = _why_not(name, weights, timm_kwargs, cause)
            raise CheckpointError(f"{weights.name} does not hold weights of {name}: {why}") from e
        check_finite(model.state_dict(), weights.name)
    model.eval()
    cfg = model.pretrained_cfg
    card = ModelCard(
        name=name, title=info["title"], source="hub", method=info["family"],
        architecture={"timm_name": name, "kwargs": dict(timm_kwargs)},
        weights=weights.name if weights else f"https://huggingface.co/{cfg.get('hf_hub_id')}",
        classes=class_names(model) if model.num_classes else [], preprocessing=data_config(model),
        accuracy=dict(NOT_MEASURED), data=info["data"], license=cfg.get("license"),
        convpass_ready=info.get("convpass_ready", False))
    return Loaded(name, "hub", model, card, image_transform(model))
