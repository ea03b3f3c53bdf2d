"""Operational routes: health, readiness, version, system info, model load/unload, tokenize."""

from __future__ import annotations

import grpc
from quart import Blueprint, Response

from .. import __version__
from ..proto import backend_pb2
from .common import json_body, json_response, state
from .schemas import ModelRequest, TokenizeRequest, parse

bp = Blueprint("system", __name__)


@bp.get("/healthz")
async def healthz():
    return Response("", status=200)


@bp.get("/readyz")
async def readyz():
    if not state().ready:
        return json_response({"status": "starting", "reason": "startup in progress"}, status=503)
    return json_response({"status": "ready"})


@bp.get("/version")
async def version():
    return json_response({"version": __version__})


@bp.get("/system")
async def system():
    app_state = state()
    return json_response(
        {
            "backends": sorted(app_state.host.backends),
            "loaded_models": [model.describe() for model in app_state.manager.loaded.values()],
            "broken_models": [{"source": b.source, "error": b.error} for b in app_state.registry.broken],
            "plugins": [info.as_dict() for info in app_state.host.plugins.values()],
        }
    )


@bp.get("/plugins")
async def plugins():
    """The loaded plugins, as ``local-ai plugins --json`` lists them (read-only)."""
    return json_response([info.as_dict() for info in state().host.plugins.values()])


@bp.post("/backend/load")
@bp.post("/v1/backend/load")
async def backend_load():
    req = parse(ModelRequest, await json_body())
    await state().manager.get(req.model)
    return json_response({"loaded": [req.model], "message": f"model {req.model} loaded"})


@bp.post("/backend/shutdown")
@bp.post("/v1/backend/shutdown")
async def backend_shutdown():
    req = parse(ModelRequest, await json_body())
    state().manager.config(req.model)
    stopped = await state().manager.unload(req.model)
    return json_response({"message": f"model {req.model} {'unloaded' if stopped else 'was not loaded'}"})


@bp.post("/v1/tokenize")
@bp.post("/tokenize")
async def tokenize():
    req = parse(TokenizeRequest, await json_body())
    async with state().manager.use(req.model) as model:
        try:
            result = await model.stub.TokenizeString(backend_pb2.PredictOptions(Prompt=req.content))
        except grpc.aio.AioRpcError as exc:
            raise await model.rpc_error(exc, "TokenizeString") from None
    return json_response({"tokens": list(result.tokens)})
