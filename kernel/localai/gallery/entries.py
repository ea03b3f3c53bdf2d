"""Model gallery entries (LocalAI's GalleryModel) and how their configs merge."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import BadRequest


class ModelFile(BaseModel):
    filename: str
    uri: str
    sha256: str = ""


class ModelEntry(BaseModel):
    """One model in a gallery (LocalAI's GalleryModel)."""

    model_config = ConfigDict(extra="allow")

    name: str
    url: str = ""
    description: str = ""
    license: str = ""
    icon: str = ""
    tags: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    files: list[ModelFile] = Field(default_factory=list)
    overrides: dict[str, Any] = Field(default_factory=dict)
    config_file: str | dict[str, Any] | None = None
    prompt_templates: list[dict[str, str]] = Field(default_factory=list)
    gallery: str = ""

    @field_validator("tags", "urls", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return [] if value is None else [value] if isinstance(value, str) else value

    def public(self) -> dict[str, Any]:
        return self.model_dump(exclude={"config_file", "prompt_templates"})


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` merged into a copy of ``base``: mappings merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def as_mapping(config_file: str | dict | None, where: str) -> dict[str, Any]:
    if config_file is None or config_file == "":
        return {}
    if isinstance(config_file, dict):
        return config_file
    try:
        value = yaml.safe_load(config_file)
    except yaml.YAMLError:  # the parser's message quotes the (possibly fetched) text: not sent back
        raise BadRequest(f"{where}: config_file is not valid YAML") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: config_file must be a YAML mapping")
    return value


def file_safe(name: str) -> str:
    return name.replace("/", "__")
