"""ModelConfig: one LocalAI-style model YAML, validated, with its files resolved."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..trust import PACKAGE_SCHEME, split_package_uri


# LocalAI's legacy backend names (pkg/model/initializers.go Aliases)
BACKEND_ALIASES = {
    "llama": "llama-cpp",
    "go-llama": "llama-cpp",
    "llama.cpp": "llama-cpp",
    "ik_llama": "ik-llama-cpp",
    "ik-llama": "ik-llama-cpp",
    "embedded-store": "local-store",
    "huggingface-embeddings": "transformers",
    "sentencetransformers": "sentence-transformers",
    "stablediffusion": "stablediffusion-ggml",
}


class Parameters(BaseModel):
    """``parameters:``: the model file plus default sampling settings."""

    model_config = ConfigDict(extra="allow")

    model: str = ""
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    repeat_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None


class Template(BaseModel):
    """``template:``: how messages become a prompt."""

    model_config = ConfigDict(extra="allow")

    use_tokenizer_template: bool = False
    chat: str | None = None
    chat_message: str | None = None
    completion: str | None = None


class Limits(BaseModel):
    """``limits:``: admission control for this model (unset fields use the server's defaults)."""

    model_config = ConfigDict(extra="allow")

    max_concurrent: int | None = Field(default=None, ge=0)  # 0 = unlimited
    max_queue: int | None = Field(default=None, ge=0)
    retry_after_seconds: int | None = Field(default=None, ge=1)


class ModelConfig(BaseModel):
    """One model: which backend runs it, which file it loads and with what options."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str
    aliases: list[str] = Field(default_factory=list)  # other names the model answers to
    backend: str = ""
    description: str = ""
    parameters: Parameters = Field(default_factory=Parameters)
    context_size: int | None = None
    threads: int | None = None
    gpu_layers: int | None = None  # unset or negative: all layers
    parallel: int | None = Field(default=None, ge=1, le=256)  # LLM slots decoded together
    main_gpu: str | None = None
    tensor_split: str | None = None
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    no_kv_offloading: bool | None = None
    f16: bool | None = None
    mmap: bool | None = None
    mmlock: bool | None = None
    embeddings: bool = False
    stopwords: list[str] = Field(default_factory=list)
    template: Template = Field(default_factory=Template)
    known_usecases: list[str] | None = None
    options: list[str] = Field(default_factory=list)
    system_prompt: str = ""
    pinned: bool = False
    flash_attention: str | None = None
    cuda: bool | None = None
    type: str | None = None
    step: int | None = None
    cfg_scale: float | None = None
    diffusers: dict[str, Any] = Field(default_factory=dict)
    tts: dict[str, Any] = Field(default_factory=dict)
    proxy: dict[str, Any] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)
    # where it came from: a YAML path or "plugin:<name>"; who put it there: "operator" or "install"
    source: str = Field(default="", exclude=True)
    provenance: str = Field(default="operator", exclude=True)

    @field_validator("name")
    @classmethod
    def _name_is_usable(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        if "/" in value or value.startswith("."):
            raise ValueError("must not contain '/' or start with '.'")
        return value

    @field_validator("options", "stopwords", mode="before")
    @classmethod
    def _list_of_strings(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return [str(item) for item in value]

    @field_validator("limits", mode="before")
    @classmethod
    def _no_limits(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def backend_name(self) -> str:
        """The backend name after LocalAI's alias table ("llama" → "llama-cpp")."""
        name = self.backend.strip().lower()
        if not name and self.parameters.model.endswith(".gguf"):
            return "llama-cpp"
        return BACKEND_ALIASES.get(name, name)

    def model_file(self, models_path: Path) -> str:
        """The absolute path of ``parameters.model`` (models dir, absolute, or ``pkg://``)."""
        return resolve_model_file(self.parameters.model, models_path)


def resolve_model_file(model: str, models_path: Path) -> str:
    """Resolve a model reference to an absolute path (it need not exist).

    ``pkg://IMPORT_NAME/PATH`` names a file inside an installed Python package, found without
    importing the package. Other values are paths, relative to the models directory.
    """
    if not model:
        return ""
    if model.startswith(PACKAGE_SCHEME):
        split = split_package_uri(model)
        if split is None:
            raise FileNotFoundError(f"{model!r} does not name a package member (pkg://IMPORT_NAME/PATH)")
        package, inner = split
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"package {package!r} for model file {model!r} is not installed")
        return os.path.join(list(spec.submodule_search_locations)[0], inner)
    path = Path(model).expanduser()
    if not path.is_absolute():
        path = models_path.resolve() / path
    return str(path)
