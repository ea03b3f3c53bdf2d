"""Image generation: ``POST /v1/images/generations`` and the ``/generated-images/`` files."""

from __future__ import annotations

import base64
import binascii
import random
import time
import uuid
from pathlib import Path

import grpc
from pydantic import Field, field_validator
from quart import Blueprint, request, send_from_directory

from ..errors import BadRequest, NotFound
from ..proto import backend_pb2
from .common import json_body, json_response, state, versioned
from .openai import model_for
from .schemas import Int32, Request, parse

bp = Blueprint("images", __name__)
route = versioned(bp)
MAX_SIDE = 2048


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
    config = model_for(req.model, "image")
    width, height = req.dimensions()
    positive, negative = req.prompts()
    step = req.step or config.step or 0
    out_dir = app_state.generated_dir / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    source = save_source_image(req.file, app_state.upload_dir) if req.file else None
    data = []
    try:
        async with app_state.manager.use(config.name) as model:
            for index in range(req.n):
                seed = req.seed + index if req.seed is not None else random.randint(1, 2**31 - 1)
                seed = (seed + 2**31) % 2**32 - 2**31  # wrapped into the backend's int32
                name = f"{uuid.uuid4().hex}.png"
                options = backend_pb2.GenerateImageRequest(
                    width=width, height=height, step=step, seed=seed, positive_prompt=positive,
                    negative_prompt=negative, dst=str(out_dir / name), src=str(source) if source else "",
                    EnableParameters=str(config.diffusers.get("enable_parameters") or ""))
                try:
                    result = await model.stub.GenerateImage(options)
                except grpc.aio.AioRpcError as exc:
                    raise await model.rpc_error(exc, "GenerateImage") from None
                path = out_dir / name
                if not result.success or not path.is_file():
                    raise BadRequest(f"image generation failed: {result.message or 'no image written'}")
                if req.response_format == "b64_json":
                    data.append({"b64_json": base64.b64encode(path.read_bytes()).decode("ascii")})
                    path.unlink(missing_ok=True)
                else:
                    data.append({"url": f"{request.host_url.rstrip('/')}/generated-images/{name}"})
    finally:
        if source is not None:
            source.unlink(missing_ok=True)
    return json_response({"created": int(time.time()), "data": data})


@bp.get("/generated-images/<path:name>")
async def generated_image(name: str):
    directory = state().generated_dir / "images"
    try:
        found = (directory / name).is_file()
    except OSError:  # e.g. a name longer than the file system allows
        found = False
    if not found:
        raise NotFound(f"no generated image {name!r}")
    return await send_from_directory(directory, name)
