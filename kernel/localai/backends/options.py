"""ModelOptions for LoadModel, built from a model config as LocalAI does."""

from __future__ import annotations

import os
from pathlib import Path

from ..models.config import ModelConfig
from ..proto import backend_pb2
from ..settings import Settings


# as LocalAI: with no ``gpu_layers`` every layer goes to the GPU when the backend has one
ALL_GPU_LAYERS = 99999999


def backend_options(config: ModelConfig) -> list[str]:
    """The config's ``options`` plus ``parallel:N`` from ``parallel`` (unless ``options`` set it)."""
    options = list(config.options)
    if config.parallel and not any(o.split(":", 1)[0].strip() == "parallel" for o in options):
        options.append(f"parallel:{config.parallel}")
    return options


def context_size(config: ModelConfig, settings: Settings) -> int:
    """The model's context (tokens per request): ``context_size`` from its YAML, else the server's
    ``--context-size``; 0 when neither is set (the backend's own default applies)."""
    return config.context_size or settings.context_size or 0


def model_options(config: ModelConfig, settings: Settings, model_file: str) -> backend_pb2.ModelOptions:
    """The LoadModel request for ``config`` (Model, ModelFile, ModelPath and the runtime knobs)."""
    threads = config.threads or settings.threads or (os.cpu_count() or 1)
    options = backend_pb2.ModelOptions(
        Model=config.parameters.model,
        ModelFile=model_file,
        ModelPath=str(Path(settings.models_path).resolve()),
        ContextSize=context_size(config, settings),
        Threads=threads,
        NGPULayers=ALL_GPU_LAYERS if config.gpu_layers is None or config.gpu_layers < 0 else config.gpu_layers,
        F16Memory=bool(config.f16),
        MMap=True if config.mmap is None else config.mmap,
        MLock=bool(config.mmlock),
        Embeddings=config.embeddings,
        Options=backend_options(config),
    )
    if config.main_gpu:
        options.MainGPU = config.main_gpu
    if config.tensor_split:
        options.TensorSplit = config.tensor_split
    if config.cache_type_k:
        options.CacheTypeKey = config.cache_type_k
    if config.cache_type_v:
        options.CacheTypeValue = config.cache_type_v
    if config.no_kv_offloading:
        options.NoKVOffload = True
    if config.parameters.seed is not None:
        options.Seed = config.parameters.seed
    if config.flash_attention:
        options.FlashAttention = config.flash_attention
    if config.type:
        options.Type = config.type
    diffusers = config.diffusers
    # CUDA when the backend finds a GPU, unless the config says ``cuda: false``
    cuda = config.cuda if config.cuda is not None else diffusers.get("cuda")
    options.CUDA = cuda is None or bool(cuda)
    if diffusers.get("pipeline_type"):
        options.PipelineType = str(diffusers["pipeline_type"])
    if diffusers.get("scheduler_type"):
        options.SchedulerType = str(diffusers["scheduler_type"])
    if diffusers.get("img2img"):
        options.IMG2IMG = True
    if diffusers.get("clip_skip"):
        options.CLIPSkip = int(diffusers["clip_skip"])
    if config.cfg_scale is not None:
        options.CFGScale = config.cfg_scale
    return options
