"""Backend gallery routes in LocalAI's shapes: list, available, apply, jobs, delete, upgrade."""

from __future__ import annotations

import asyncio

from quart import Blueprint, Response, request

from ..errors import BadRequest, NotFound
from ..gallery.service import looks_like_uri
from ..gallery.store import default_name, valid_name
from .common import galleries_json, job_events, job_or_404, json_body, json_response, state
from .schemas import BackendApplyRequest, parse

bp = Blueprint("backends", __name__)


def gallery():
    return state().gallery


def job_reply(job) -> Response:
    base = request.host_url.rstrip("/")
    return json_response({"id": job.id, "uuid": job.id, "status_url": f"{base}/backends/jobs/{job.id}"})


@bp.get("/backends")
async def installed():
    backends = await asyncio.to_thread(gallery().store.installed)
    return json_response([b.public() for b in backends])


@bp.get("/backends/available")
async def available():
    return json_response(await asyncio.to_thread(gallery().available))


@bp.get("/backends/galleries")
async def galleries():
    return galleries_json(await asyncio.to_thread(gallery().galleries.load))


@bp.post("/backends/apply")
async def apply():
    req = parse(BackendApplyRequest, await json_body())
    target = req.target()
    service = gallery()
    if looks_like_uri(target):
        if not state().settings.allow_backend_uris:
            # a backend is a program: only the operator's galleries (or the CLI) may bring one
            raise BadRequest(f"installing a backend from a URI ({target!r}) through the API is turned off: install "
                             "one from the backend galleries by name, use `local-ai backends install`, or start the "
                             "server with --allow-backend-uris (LOCALAI_ALLOW_BACKEND_URIS=true)",
                             code="backend_uri_not_allowed", param="uri" if req.uri else "id")
        valid_name(req.name or default_name(target))
    else:
        await asyncio.to_thread(service.galleries.find, target, True)
    return job_reply(service.submit_install(target, name=req.name, alias=req.alias, force=req.force))


@bp.post("/backends/delete/<name>")
async def delete(name: str):
    service = gallery()
    if await asyncio.to_thread(service.store.get, name) is None:
        raise NotFound(f"no backend found with name {name!r}", code="backend_not_found")
    return job_reply(service.submit_delete(name))


@bp.get("/backends/jobs")
async def jobs():
    return json_response({job.id: job.status() for job in gallery().jobs.jobs.values()})


@bp.get("/backends/jobs/<job_id>")
async def job_status(job_id: str):
    return job_or_404(gallery().jobs.get(job_id), job_id)


@bp.post("/backends/jobs/<job_id>/cancel")
async def job_cancel(job_id: str):
    return job_or_404(gallery().jobs.cancel(job_id), job_id)


@bp.get("/backends/events")
async def events():
    """Server-sent events: every job's status whenever it changes."""
    return job_events(gallery().jobs)


@bp.get("/backends/upgrades")
async def upgrades():
    service = gallery()
    return json_response(await asyncio.to_thread(service.store.upgrades, service.galleries))


@bp.post("/backends/upgrade/<name>")
async def upgrade(name: str):
    service = gallery()
    if await asyncio.to_thread(service.store.get, name) is None:
        raise NotFound(f"no backend found with name {name!r}", code="backend_not_found")
    return job_reply(service.submit_upgrade(name))
