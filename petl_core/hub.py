"""timm weights from the Hugging Face hub: which the explorer offers (`HUB`) and whether they can be had now (cached,
or the hub reachable: `hub_status`). Torch-free: loading one is `petl_core.zoo.load`."""
from __future__ import annotations

import os
import socket
import threading
import urllib.request
from urllib.parse import urlparse

__all__ = ["HUB", "cached_weights", "hub_reachable", "hub_status", "offline"]

HUB: dict[str, dict] = {
    "convit_tiny.fb_in1k": dict(title="ConViT-Ti, ImageNet-1k (Facebook)", family="convit", data="ImageNet-1k",
                                blocks=12, heads=4, hub_id="timm/convit_tiny.fb_in1k"),
    "convit_small.fb_in1k": dict(title="ConViT-S, ImageNet-1k (Facebook)", family="convit", data="ImageNet-1k",
                                 blocks=12, heads=9, hub_id="timm/convit_small.fb_in1k"),
    "deit_tiny_patch16_224.fb_in1k": dict(title="DeiT-Ti/16, ImageNet-1k (Facebook)", family="vit",
                                          data="ImageNet-1k", blocks=12, heads=3,
                                          hub_id="timm/deit_tiny_patch16_224.fb_in1k"),
    "deit_small_patch16_224.fb_in1k": dict(title="DeiT-S/16, ImageNet-1k (Facebook)", family="vit",
                                           data="ImageNet-1k", blocks=12, heads=6,
                                           hub_id="timm/deit_small_patch16_224.fb_in1k"),
    "vit_base_patch16_224.orig_in21k": dict(title="ViT-B/16, ImageNet-21k (original, no classifier head): "
                                                  "a backbone for Convpass", family="vit", data="ImageNet-21k",
                                            convpass_ready=True, blocks=12, heads=12,
                                            hub_id="timm/vit_base_patch16_224.orig_in21k"),
}
"""timm weights offered from the Hugging Face hub (or from a local copy of their file), with their architecture's
blocks and heads per block and the hub repository of their weights (timm's; tests/test_zoo.py checks them against a
skeleton and the pretrained config of each), so the app can size its controls and find cached weights without
importing timm or building five models."""
TIMEOUT_S = 2.0
"""How long `hub_reachable` waits for a connection, DNS included."""


def offline() -> bool:
    """Whether the Hugging Face hub is switched off here (HF_HUB_OFFLINE)."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def cached_weights(name: str) -> str | None:
    """The path of `name`'s weights in the Hugging Face cache, if they were downloaded before."""
    from huggingface_hub import try_to_load_from_cache

    if name not in HUB:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):  # (timm's choice when a config names no file)
        path = try_to_load_from_cache(HUB[name]["hub_id"], filename)
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
