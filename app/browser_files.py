"""What the page fetches as plain files to score the dial itself (app/tabs/dial.js): the vendored web runtime, a
shipped ConViT's dial graphs (petl_core.export) and its probe set, prepared as the model sees it.

Plain HTTP routes, not queued events: they are the same for everyone, a browser caches them, and they never wait
behind a computation. Each name in a path is looked up in a fixed set (no path is ever built from a request):

    /explorer/runtime/<file>               the runtime's module and its gzipped WASM binary (assets/onnxruntime-web)
    /explorer/dial/<model>/dial.json       the graphs' manifest; 404 unless the graphs fit the model's weights now
    /explorer/dial/<model>/<graph>.onnx    a graph the manifest names
    /explorer/dial/<model>/probe.bin       the probe images (N, C, S, S) float32, little-endian
    /explorer/dial/<model>/probe.json      their labels and shape
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from app.service import Service
from petl_core import catalog

__all__ = ["RUNTIME", "routes"]

RUNTIME = Path(__file__).resolve().parents[1] / "assets" / "onnxruntime-web"
_RUNTIME_FILES = {"ort.wasm.bundle.min.mjs": "text/javascript", "ort-wasm-simd-threaded.wasm.gz": "application/gzip"}
_CACHED = {"Cache-Control": "public, max-age=3600"}


def _missing() -> Response:
    return PlainTextResponse("Not found.", status_code=404)


def routes(service: Service) -> list[Route]:
    """The routes above, the probe prepared by `service`'s models and data."""

    @functools.lru_cache(maxsize=len(catalog.BROWSER_MODELS))
    def manifest(model: str) -> tuple[Path, dict] | None:  # (read once: the weights do not change while serving)
        return catalog.dial_graphs_manifest(model)

    @functools.lru_cache(maxsize=len(catalog.BROWSER_MODELS))
    def probe(model: str) -> tuple[bytes, dict]:
        from petl_core.preprocess import prepare_as_card

        loaded = service.get_model(model)
        images = service.probe(loaded.card.recipe["data"])
        x = prepare_as_card(images.images, loaded.model, loaded.card.preprocessing)
        return (x.numpy().astype("<f4").tobytes(),
                {"labels": images.labels.tolist(), "shape": list(x.shape)})

    def runtime_file(request: Request) -> Response:
        name = request.path_params["file"]
        if name not in _RUNTIME_FILES:
            return _missing()
        return FileResponse(RUNTIME / name, media_type=_RUNTIME_FILES[name], headers=_CACHED)

    def dial_file(request: Request) -> Response:
        model, name = request.path_params["model"], request.path_params["file"]
        found = manifest(model) if model in catalog.BROWSER_MODELS else None
        if found is None:
            return _missing()
        folder, graphs = found
        if name == "dial.json":
            return JSONResponse(graphs, headers=_CACHED)
        if name in graphs["graphs"]:
            return FileResponse(folder / name, media_type="application/octet-stream", headers=_CACHED)
        if name in ("probe.bin", "probe.json"):
            try:
                data, about = probe(model)
            except Exception:  # a missing dataset: the page scores on the server instead
                return _missing()
            if name == "probe.bin":
                return Response(data, media_type="application/octet-stream", headers=_CACHED)
            return Response(json.dumps(about), media_type="application/json", headers=_CACHED)
        return _missing()

    return [Route("/explorer/runtime/{file}", runtime_file), Route("/explorer/dial/{model}/{file}", dial_file)]
