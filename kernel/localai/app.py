"""The Quart application: state on the app, blueprints, errors in the OpenAI shape."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from quart import Quart, Response
from werkzeug.exceptions import HTTPException

from . import auth, limits, metrics, security
from .api import audio, backends, images, model_gallery as model_gallery_api, openai, rerank, system
from .api import ui as ui_api
from .api import openapi as openapi_api
from .backends.manager import ModelManager
from .errors import APIError
from .gallery.jobs import JobManager
from .gallery.models import ModelGallery
from .gallery.service import BackendGallery
from .host import PluginHost
from .models.registry import ModelRegistry
from .settings import Settings

log = logging.getLogger("localai.app")


@dataclass
class AppState:
    """Everything a request handler needs, kept on ``app.extensions["localai"]``."""

    settings: Settings
    host: PluginHost
    registry: ModelRegistry
    manager: ModelManager
    gallery: BackendGallery
    models: ModelGallery
    generated_dir: Path = Path()
    upload_dir: Path = Path()
    output_dir: Path = Path()
    started_at: float = field(default_factory=time.time)
    ready: bool = False


def error_response(error: APIError) -> Response:
    return Response(
        orjson.dumps(error.body()), status=error.status, content_type="application/json", headers=error.headers
    )


def create_app(settings: Settings, host: PluginHost | None = None) -> Quart:
    """Build the app: load plugins and model configs, register routes and lifecycle hooks."""
    host = host or PluginHost(settings)
    registry = ModelRegistry(settings.models_path, host.model_configs(), data_path=settings.data_path,
                             fallback=settings.model_fallback)
    scratch = Path(tempfile.mkdtemp(prefix="localai-"))  # 0700, removed at shutdown
    outputs = scratch / "backend-output"  # backends write only in here, one fresh directory per request
    outputs.mkdir(mode=0o700)
    manager = ModelManager(host, registry, settings, output_dir=outputs)

    app = Quart("localai", static_folder=None)
    app.config.update(RESPONSE_TIMEOUT=None, BODY_TIMEOUT=600, MAX_CONTENT_LENGTH=64 * 1024 * 1024)
    jobs = JobManager(state_file=settings.backends_path / ".jobs.json")
    gallery = BackendGallery(settings, host, jobs)
    model_gallery = ModelGallery(settings, host, gallery, registry)
    generated = settings.generated_content_path or scratch / "generated"
    uploads = settings.upload_path or scratch / "uploads"
    for directory in (generated, uploads):
        directory.mkdir(parents=True, exist_ok=True)
    app.extensions["localai"] = state = AppState(settings, host, registry, manager, gallery, model_gallery, generated,
                                                  uploads, output_dir=outputs)
    metrics.install(app)  # first: request ids and timing for every request, refused ones too
    security.install(app, settings)  # Host and Origin before keys: a foreign page gets 403, not 401
    auth.install(app, settings)
    limits.install(app, settings)
    app.register_blueprint(openai.bp)
    app.register_blueprint(system.bp)
    app.register_blueprint(backends.bp)
    app.register_blueprint(images.bp)
    app.register_blueprint(audio.bp)
    app.register_blueprint(rerank.bp)
    app.register_blueprint(model_gallery_api.bp)
    if not settings.disable_webui:
        app.register_blueprint(ui_api.bp)
    app.register_blueprint(openapi_api.bp)

    @app.errorhandler(APIError)
    async def api_error(error: APIError):
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException):
        kind = "invalid_request_error" if (error.code or 500) < 500 else "server_error"
        return error_response(APIError(error.description or error.name, status=error.code, type=kind))

    @app.errorhandler(Exception)
    async def unexpected_error(error: Exception):
        log.exception("unhandled error: %s", error)
        return error_response(APIError(f"internal error: {type(error).__name__}: {error}", status=500))

    @app.before_serving
    async def startup():
        gallery.store.remove_stale()
        manager.start()
        await host.lifecycle("localai_startup", app)
        if settings.external_backends:
            # /readyz says "starting" until the pre-installs are done; requests are served meanwhile
            async def preinstall():
                await gallery.preinstall(settings.external_backends)
                state.ready = True

            app.add_background_task(preinstall)
        else:
            state.ready = True

    @app.after_serving
    async def shutdown():
        state.ready = False
        try:
            await host.lifecycle("localai_shutdown", app)
        finally:
            await manager.shutdown()
            shutil.rmtree(scratch, ignore_errors=True)

    host.register_routes(app)
    return app
