"""Model gallery routes in LocalAI's shapes: available, galleries, apply, jobs, delete."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field
from quart import Blueprint, Response, request

from .common import galleries_json, job_events, job_or_404, json_body, json_response, state
from .schemas import Request, parse

bp = Blueprint("model_gallery", __name__)


class ModelApplyRequest(Request):
    """``POST /models/apply``: ``id`` ("gallery@name" | "name" | a model URI) or ``url`` of a config;
    ``force`` reinstalls a model an earlier install made (the operator's models are never replaced)."""

    id: str | None = Field(default=None, min_length=1)
    url: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)
    force: bool = False


def job_reply(job) -> Response:
    base = request.host_url.rstrip("/")
    return json_response({"uuid": job.id, "id": job.id, "status": f"{base}/models/jobs/{job.id}"})


@bp.get("/models/available")
async def available():
    return json_response(await asyncio.to_thread(state().models.available))


@bp.get("/models/galleries")
async def galleries():
    return galleries_json(await asyncio.to_thread(state().models.galleries.load))


@bp.post("/models/apply")
async def apply():
    req = parse(ModelApplyRequest, await json_body())
    gallery = state().models
    roots = list(state().settings.allow_local_urls)
    # a host name in the request is resolved (net_policy): off the event loop
    await asyncio.to_thread(gallery.check_request, req.id, req.url, req.overrides, roots)
    entry = await asyncio.to_thread(gallery.resolve, req.id, req.url, gallery.url_guard(roots))
    await asyncio.to_thread(gallery.check_name, req.name or entry.name, req.force)
    if not entry.gallery:  # a config the request brought: refuse it now; gallery entries fail their job
        gallery.check_entry(entry, req.overrides, roots)
        await asyncio.to_thread(gallery.check_files, entry, req.name or entry.name)

    def work(job, progress) -> str:
        name = gallery.install(req.id, url=req.url, name=req.name, overrides=req.overrides, progress=progress,
                               cancel=job.cancel_event, local_roots=roots, force=req.force)
        return f"model {name} installed"

    job = state().gallery.jobs.submit("model-install", req.name or entry.name, work)
    return job_reply(job)


@bp.post("/models/delete/<name>")
async def delete(name: str):
    gallery = state().models
    await asyncio.to_thread(gallery.check_delete, name)  # 404 unknown, 403 the operator's

    def work(job, progress) -> str:
        return "deleted " + ", ".join(gallery.delete(name))

    return job_reply(state().gallery.jobs.submit("model-delete", name, work))


@bp.get("/models/jobs")
async def jobs():
    return json_response({job.id: job.status() for job in state().gallery.jobs.jobs.values()
                          if job.kind.startswith("model-")})


@bp.get("/models/jobs/<job_id>")
async def job_status(job_id: str):
    return job_or_404(state().gallery.jobs.get(job_id), job_id)


@bp.get("/models/events")
async def events():
    """Server-sent events of every gallery job (models and backends)."""
    return job_events(state().gallery.jobs)


@bp.post("/models/jobs/<job_id>/cancel")
async def job_cancel(job_id: str):
    return job_or_404(state().gallery.jobs.cancel(job_id), job_id)
