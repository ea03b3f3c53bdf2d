"""The diffusers engine of the diffusers backend, text-to-image and image-to-image (its servicer: :mod:`.servicer`).

torch and diffusers are imported by the first LoadModel, and every model call runs on one
worker thread, FIFO, so torch's thread pool is set up once and requests never overlap.
Requests are validated on the gRPC thread first, so bad ones are answered at once.

LoadModel reads ``ModelFile`` (else ``Model``): a diffusers directory (``model_index.json``),
a single-file checkpoint (``.safetensors``/``.ckpt``, loaded with ``from_single_file``) or,
failing both, a Hugging Face repo id (``HF_HUB_OFFLINE=1`` unless the environment says
otherwise, so only the local cache is used). ``PipelineType`` names a diffusers pipeline
class (default ``DiffusionPipeline``), ``SchedulerType`` a LocalAI scheduler name (``euler_a``,
``k_dpmpp_2m``...) or a diffusers scheduler class. ``CUDA`` runs on the GPU in float16 when
one is available; otherwise the CPU in float32. ``IMG2IMG`` prepares an image-to-image
pipeline at load (it is otherwise made on the first request with ``src``).

``ModelOptions.Options`` entries (``"key:value"``):

- ``steps:N``: inference steps when the request has none (default 25)
- ``strength:F``: img2img strength (default 0.75)
- ``guidance_scale:F``: default guidance when ``CFGScale`` is 0 (default 7.5)
- ``config:PATH_OR_REPO``: diffusers config for single-file checkpoints
- ``variant:NAME``: weights variant for ``from_pretrained`` (e.g. ``fp16``)
"""

from __future__ import annotations

import gc
import inspect
import os
import random
import re
import sys
import tempfile
import threading
import time
import types
from typing import Any

from localai.backend_server import BadRequest, NotLoaded, parse_options
from localai.proto import backend_pb2

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

torch: Any = None  # imported on the worker thread by LoadModel
diffusers: Any = None
DTYPE_KW = "dtype"

SINGLE_FILE_EXTS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
DEFAULT_SIZE, MIN_SIZE, MAX_SIZE = 512, 8, 2048
DEFAULT_STEPS, MAX_STEPS = 25, 150
DEFAULT_CFG, DEFAULT_STRENGTH = 7.5, 0.75
REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")

# LocalAI scheduler names (A1111 style; a "k_" prefix adds Karras sigmas) → class, extra config
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpm_2": ("KDPM2DiscreteScheduler", {}),
    "dpm_2_a": ("KDPM2AncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_sde": ("DPMSolverSinglestepScheduler", {}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "lcm": ("LCMScheduler", {}),
}


class Cancelled(Exception):
    """The client went away before the image was done."""


class LoadError(Exception):
    """LoadModel cannot proceed; the message is the reason."""


def _log(msg: str) -> None:
    print(f"diffusers: {msg}", file=sys.stderr, flush=True)


def _import() -> None:
    """Import torch and diffusers (once), with progress bars off."""
    global torch, diffusers, DTYPE_KW
    if diffusers is not None:
        return
    import diffusers as _diffusers
    import torch as _torch

    _diffusers.utils.logging.disable_progress_bar()
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - transformers is optional for some pipelines
        pass
    try:  # diffusers >= 0.36 renamed torch_dtype to dtype
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        DTYPE_KW = "torch_dtype"
    torch, diffusers = _torch, _diffusers


def make_scheduler(name: str, config: Any) -> Any:
    """A diffusers scheduler for a LocalAI name (or class name), built ``from_config``."""
    key = name.strip().lower()
    extra: dict[str, Any] = {}
    if key not in SCHEDULERS and key.startswith("k_"):
        key = key.removeprefix("k_")
        extra["use_karras_sigmas"] = True
    if key in SCHEDULERS:
        cls_name, cfg = SCHEDULERS[key]
        extra.update(cfg)
    else:
        cls_name = name.strip()
    cls = getattr(diffusers, cls_name, None)
    if cls is None or not cls_name.endswith("Scheduler"):
        raise LoadError(f"unknown scheduler_type {name!r} (known: {', '.join(sorted(SCHEDULERS))})")
    return cls.from_config({**dict(config), **extra})


def _patch_clip_skip(pipe: Any) -> None:
    """Let diffusers' clip_skip code find ``text_encoder.text_model`` on transformers 5.x CLIP."""
    te = getattr(pipe, "text_encoder", None)
    if te is None or hasattr(te, "text_model") or not hasattr(te, "final_layer_norm"):
        return
    object.__setattr__(te, "text_model", types.SimpleNamespace(final_layer_norm=te.final_layer_norm))


def _call_params(pipe: Any) -> tuple[set[str], bool]:
    """Keyword names ``pipe.__call__`` takes, and whether it takes ``**kwargs``."""
    params = inspect.signature(pipe.__call__).parameters
    return set(params), any(p.kind is p.VAR_KEYWORD for p in params.values())


class Engine:
    """The loaded pipelines. ``load``, ``generate`` and ``free`` run on the worker thread only."""

    def __init__(self) -> None:
        self.pipe: Any = None  # the pipeline loaded (text-to-image unless it is an img2img one)
        self.t2i: Any = None
        self.i2i: Any = None
        self.device = "cpu"
        self.cfg = DEFAULT_CFG
        self.clip_skip = 0
        self.steps = DEFAULT_STEPS
        self.strength = DEFAULT_STRENGTH

    # -- lifecycle ---------------------------------------------------------------------

    def load(self, req: Any) -> Any:
        """LoadModel: build the pipeline(s) described by ``req``."""
        try:
            self._load(req)
        except LoadError as exc:
            self.free()
            return backend_pb2.Result(success=False, message=str(exc))
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            self.free()
            return backend_pb2.Result(success=False, message=f"failed to load model: {type(exc).__name__}: {exc}")
        pipe = self.pipe
        return backend_pb2.Result(success=True, message=f"Model loaded successfully ({type(pipe).__name__}, "
                                  f"{type(pipe.scheduler).__name__}, on {self.device})")

    def _load(self, req: Any) -> None:
        opts = parse_options(req.Options)
        try:
            steps = int(opts.get("steps", DEFAULT_STEPS))
            strength = float(opts.get("strength", DEFAULT_STRENGTH))
            cfg = req.CFGScale or float(opts.get("guidance_scale", DEFAULT_CFG))
        except ValueError as exc:
            raise LoadError(f"bad option value: {exc}") from exc
        if not 1 <= steps <= MAX_STEPS or not 0 < strength <= 1:
            raise LoadError(f"options out of range: steps must be 1-{MAX_STEPS}, strength in (0, 1]")
        path, single = self._resolve(req)
        _import()
        torch.set_num_threads(req.Threads or len(os.sched_getaffinity(0)) or 1)
        device, dtype = self._device(req)
        cls = self._pipeline_class(req.PipelineType, single)
        self.free()
        kwargs: dict[str, Any] = {DTYPE_KW: dtype}
        t0 = time.perf_counter()
        if single:
            if opts.get("config"):
                kwargs["config"] = opts["config"]
            pipe = cls.from_single_file(path, **kwargs)
        else:
            if opts.get("variant"):
                kwargs["variant"] = opts["variant"]
            pipe = cls.from_pretrained(path, **kwargs)
        if req.SchedulerType:
            pipe.scheduler = make_scheduler(req.SchedulerType, pipe.scheduler.config)
        if device.startswith("cuda") and req.LowVRAM:
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(device)
        _patch_clip_skip(pipe)
        pipe.set_progress_bar_config(disable=True)
        self.pipe, self.device = pipe, device
        self.cfg, self.clip_skip, self.steps, self.strength = cfg, req.CLIPSkip, steps, strength
        if "Img2Img" in type(pipe).__name__ or "Image2Image" in type(pipe).__name__:
            self.i2i = pipe
        else:
            self.t2i = pipe
            if req.IMG2IMG:
                self._img2img()
        _log(f"loaded {path} as {type(pipe).__name__} ({type(pipe.scheduler).__name__}) on {device} "
             f"({dtype}) in {time.perf_counter() - t0:.2f}s")

    @staticmethod
    def _resolve(req: Any) -> tuple[str, bool]:
        """(path or repo id, is a single-file checkpoint) for ModelFile/Model."""
        candidates = [req.ModelFile]
        if req.Model:
            candidates.append(req.Model if os.path.isabs(req.Model) or not req.ModelPath
                              else os.path.join(req.ModelPath, req.Model))
        for path in filter(None, candidates):
            if os.path.isdir(path):
                if not os.path.isfile(os.path.join(path, "model_index.json")):
                    raise LoadError(f"not a diffusers model directory (no model_index.json): {path}")
                return path, False
            if os.path.isfile(path):
                if not path.lower().endswith(SINGLE_FILE_EXTS):
                    raise LoadError(f"unsupported model file (want a directory or "
                                    f"{'/'.join(SINGLE_FILE_EXTS)}): {path}")
                return path, True
        if req.Model and REPO_ID.fullmatch(req.Model) and not os.path.isabs(req.Model):
            return req.Model, False  # a Hugging Face repo id: from the cache (or the hub if allowed)
        shown = req.ModelFile or req.Model
        raise LoadError(f"model not found: {shown}" if shown else "no model given (ModelFile or Model)")

    @staticmethod
    def _device(req: Any) -> tuple[str, Any]:
        """("cuda[:N]", float16) when CUDA is asked and present, else ("cpu", float32); DType overrides.

        The kernel asks for CUDA unless the model config says ``cuda: false``; ``main_gpu: N``
        picks the device.
        """
        cuda = bool(req.CUDA) and torch.cuda.is_available()
        dtype = torch.float16 if cuda else torch.float32
        named = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
                 "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                 "float32": torch.float32, "fp32": torch.float32, "float": torch.float32}
        if req.DType:
            if req.DType.lower() not in named:
                raise LoadError(f"unknown dtype {req.DType!r}")
            dtype = named[req.DType.lower()]
            if not cuda and dtype is torch.float16:
                _log("float16 is not supported on CPU: using float32")
                dtype = torch.float32
        if not cuda:
            return "cpu", dtype
        if req.MainGPU.strip().isdigit():
            index = int(req.MainGPU)
            if index >= torch.cuda.device_count():
                raise LoadError(f"main_gpu {index} does not exist ({torch.cuda.device_count()} CUDA devices)")
            return f"cuda:{index}", dtype
        return "cuda", dtype

    @staticmethod
    def _pipeline_class(name: str, single: bool) -> Any:
        """The diffusers class for ``PipelineType`` (single files need ``from_single_file``)."""
        name = name.strip() or "DiffusionPipeline"
        cls = getattr(diffusers, name, None)
        if cls is None or not hasattr(cls, "from_pretrained"):
            raise LoadError(f"unknown pipeline_type {name!r}")
        if single and not hasattr(cls, "from_single_file"):
            fallback = "StableDiffusionImg2ImgPipeline" if "Image2Image" in name else "StableDiffusionPipeline"
            if name not in ("DiffusionPipeline", "AutoPipelineForText2Image", "AutoPipelineForImage2Image"):
                raise LoadError(f"{name} cannot load single-file checkpoints")
            cls = getattr(diffusers, fallback)
        return cls

    def _img2img(self) -> Any:
        """The image-to-image pipeline, sharing the loaded components."""
        if self.i2i is None:
            try:
                self.i2i = diffusers.AutoPipelineForImage2Image.from_pipe(self.pipe)
            except Exception as exc:  # noqa: BLE001
                raise BadRequest(f"{type(self.pipe).__name__} has no image-to-image variant: {exc}") from exc
            self.i2i.set_progress_bar_config(disable=True)
        return self.i2i

    def _text2img(self) -> Any:
        """The text-to-image pipeline (derived when an img2img pipeline was loaded)."""
        if self.t2i is None:
            try:
                self.t2i = diffusers.AutoPipelineForText2Image.from_pipe(self.pipe)
            except Exception as exc:  # noqa: BLE001
                raise BadRequest(f"{type(self.pipe).__name__} needs an input image (src)") from exc
            self.t2i.set_progress_bar_config(disable=True)
        return self.t2i

    def free(self) -> Any:
        """Free: drop the pipelines and give memory back."""
        had = self.pipe is not None
        self.pipe = self.t2i = self.i2i = None
        gc.collect()
        if had and self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        return backend_pb2.Result(success=True, message="model freed")

    # -- generation --------------------------------------------------------------------

    def generate(self, req: Any, width: int, height: int, steps: int, cancelled: threading.Event) -> Any:
        """GenerateImage: run the pipeline and write the image to ``req.dst``."""
        if self.pipe is None:
            raise NotLoaded("model not loaded")
        if cancelled.is_set():
            raise Cancelled()
        t0 = time.perf_counter()
        options: dict[str, Any] = {"num_inference_steps": steps}
        if req.negative_prompt:
            options["negative_prompt"] = req.negative_prompt
        clip_skip = req.CLIPSkip or self.clip_skip
        if clip_skip > 0:
            options["clip_skip"] = clip_skip
        if req.src:
            if int(steps * self.strength) < 1:
                raise BadRequest(f"img2img needs more steps: {steps} step(s) x strength {self.strength} < 1")
            pipe = self._img2img()
            options["image"] = _open_image(req.src, width, height)
            options["strength"] = self.strength
        else:
            pipe = self._text2img()
            options["width"], options["height"] = width, height
        if req.EnableParameters:  # LocalAI: a comma list of the options to pass, or "none"
            keep = {k.strip() for k in req.EnableParameters.split(",")}
            options = {k: v for k, v in options.items() if k in keep or k in ("image", "strength")}
        names, var_kw = _call_params(pipe)
        kwargs = {k: v for k, v in options.items() if var_kw or k in names}
        seed = req.seed if req.seed else random.randrange(2**31)
        kwargs["generator"] = torch.Generator(device=self.device).manual_seed(seed)
        if "guidance_scale" in names or var_kw:
            kwargs["guidance_scale"] = self.cfg
        if "callback_on_step_end" in names:
            def stop_if_cancelled(p: Any, _i: int, _t: Any, kw: dict) -> dict:
                if cancelled.is_set():
                    p._interrupt = True
                return kw

            kwargs["callback_on_step_end"] = stop_if_cancelled
        try:
            image = pipe(req.positive_prompt, **kwargs).images[0]
        except ValueError as exc:  # diffusers' input checks
            raise BadRequest(str(exc)) from exc
        if cancelled.is_set():
            raise Cancelled()
        _save_atomic(image, req.dst)
        took = time.perf_counter() - t0
        return backend_pb2.Result(
            success=True,
            message=f"Media generated: {image.width}x{image.height}, {steps} steps, seed {seed}, {took:.2f}s",
        )


def _open_image(path: str, width: int, height: int) -> Any:
    """The ``src`` image as RGB, resized to the requested size."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise BadRequest(f"cannot read src image {path}: {exc}") from exc
    if img.size != (width, height):
        img = img.resize((width, height), Image.LANCZOS)
    return img


def _save_atomic(image: Any, dst: str) -> None:
    """Save ``image`` to ``dst`` through a temp file in the same directory, then rename."""
    from PIL import Image

    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    ext = os.path.splitext(dst)[1].lower()
    fmt = Image.registered_extensions().get(ext, "PNG")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=ext or ".png", dir=folder)
    os.close(fd)
    try:
        image.save(tmp, format=fmt)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
