"""Image generation: ``POST /v1/images/generations`` and the ``/generated-images/`` files.

``/generated-images/<name>`` serves only what :func:`image_name` made: a name of that exact form
naming a regular file (not a link) in the images directory. Anything else — traversal, encoded or
not, a missing file, a directory, a link — gets the same 404 with the same body.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
import shutil
import stat
import time
import uuid
from pathlib import Path

import grpc
from pydantic import Field, field_validator
from quart import Blueprint, request, send_file
from werkzeug.routing import PathConverter

from ..backends.outputs import request_dir
from ..chat.models import model_for
from ..errors import BadRequest, NotFound
from ..proto import backend_pb2
from .common import json_body, json_response, state, versioned
from .schemas import Int32, Request, parse

class AnyPath(PathConverter):
    """A path that may be empty or start with ``/``, so every name reaches the one 404 below."""

    regex = ".*"
    part_isolating = False


bp = Blueprint("images", __name__)
bp.record_once(lambda setup: setup.app.url_map.converters.setdefault("any_path", AnyPath))
route = versioned(bp)
MAX_SIDE = 2048
IMAGE_NAME = re.compile(r"[0-9a-f]{32}\.png")


def image_name() -> str:
    """A new generated image's file name (the only form ``/generated-images/`` serves)."""
    return f"{uuid.uuid4().hex}.png"


class ImageRequest(Request):
    model: str | None = None
    prompt: str = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=10)
    size: str | None = None
    response_format: str = "url"
    seed: Int32 | None = None
    step: int | None = Field(default=None, ge=1, le=150)
    negative_prompt: str | None = None
    file: str | None = None  # LocalAI: a base64 image (or data URL) for image-to-image

    @field_validator("response_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in ("url", "b64_json"):
            raise ValueError("must be 'url' or 'b64_json'")
        return value

    def dimensions(self, default: int = 512) -> tuple[int, int]:
        if not self.size:
            return default, default
        width, sep, height = self.size.lower().partition("x")
        if not sep or not width.isdigit() or not height.isdigit():
            raise BadRequest(f"size must look like 512x512, not {self.size!r}", param="size")
        w, h = int(width), int(height)
        if not (8 <= w <= MAX_SIDE and 8 <= h <= MAX_SIDE):
            raise BadRequest(f"size {self.size} is out of range (each side 8 to {MAX_SIDE})", param="size")
        return w, h

    def prompts(self) -> tuple[str, str]:
        """LocalAI's ``positive|negative`` split."""
        positive, _, negative = self.prompt.partition("|")
        if not positive.strip():
            raise BadRequest("prompt must not be empty", param="prompt")
        return positive.strip(), (self.negative_prompt or negative).strip()


def save_source_image(data: str, directory: Path) -> Path:
    """Decode a base64 (or data URL) input image to a temp file for the backend."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("file must be a base64-encoded image", param="file") from None
    path = directory / f"src-{uuid.uuid4().hex}.png"
    path.write_bytes(raw)
    return path


@route("/images/generations", methods=["POST"])
async def generate_images():
    req = parse(ImageRequest, await json_body())
    app_state = state()
    config = model_for(state(), req.model, "image")
    width, height = req.dimensions()
    positive, negative = req.prompts()
    step = req.step or config.step or 0
    out_dir = app_state.generated_dir / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    source = save_source_image(req.file, app_state.upload_dir) if req.file else None
    data = []
    try:
        # the backend writes into a directory made for this request; served images are moved out of it
        with request_dir(app_state.output_dir) as folder:
            async with app_state.manager.use(config.name) as model:
                for index in range(req.n):
                    seed = req.seed + index if req.seed is not None else random.randint(1, 2**31 - 1)
                    seed = (seed + 2**31) % 2**32 - 2**31  # wrapped into the backend's int32
                    name = image_name()
                    path = folder / name
                    options = backend_pb2.GenerateImageRequest(
                        width=width, height=height, step=step, seed=seed, positive_prompt=positive,
                        negative_prompt=negative, dst=str(path), src=str(source) if source else "",
                        EnableParameters=str(config.diffusers.get("enable_parameters") or ""))
                    try:
                        result = await model.stub.GenerateImage(options)
                    except grpc.aio.AioRpcError as exc:
                        raise await model.rpc_error(exc, "GenerateImage") from None
                    if not result.success or not path.is_file():
                        raise BadRequest(f"image generation failed: {result.message or 'no image written'}")
                    if req.response_format == "b64_json":
                        data.append({"b64_json": base64.b64encode(path.read_bytes()).decode("ascii")})
                    else:
                        shutil.move(path, out_dir / name)
                        data.append({"url": f"{request.host_url.rstrip('/')}/generated-images/{name}"})
    finally:
        if source is not None:
            source.unlink(missing_ok=True)
    return json_response({"created": int(time.time()), "data": data})


@bp.get("/generated-images/<any_path:name>", merge_slashes=False)  # "//" too: no redirect, the same 404
async def generated_image(name: str):
    """A generated image; one 404, whatever the name, for anything that is not one."""
    path = state().generated_dir / "images" / name
    try:
        found = IMAGE_NAME.fullmatch(name) is not None and stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        found = False
    if not found:
        raise NotFound("generated image not found")
    return await send_file(path, mimetype="image/png")
