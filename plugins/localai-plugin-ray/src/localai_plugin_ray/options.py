"""Plugin settings (environment) and a model's ``ray:`` placement options; no Ray import here."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from localai.errors import LoadError

ADDRESS_ENV = "LOCALAI_RAY_ADDRESS"
NAMESPACE_ENV = "LOCALAI_RAY_NAMESPACE"
PLACEMENT_TIMEOUT_ENV = "LOCALAI_RAY_PLACEMENT_TIMEOUT"


def ray_address() -> str:
    """The cluster address (``host:port`` of the head's GCS, or ``auto``); empty = Ray is off."""
    return os.environ.get(ADDRESS_ENV, "").strip()


def ray_namespace() -> str:
    """The Ray namespace holding the backend actors (kernels sharing backends use the same one)."""
    return os.environ.get(NAMESPACE_ENV, "").strip() or "localai"


def placement_timeout() -> float:
    """Seconds a backend may wait for a node with the resources it asks for."""
    value = os.environ.get(PLACEMENT_TIMEOUT_ENV, "").strip()
    return float(value) if value else 120.0


class RayOptions(BaseModel):
    """A model's ``ray:`` mapping: the Ray resources of each backend replica, and how many."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    memory: int | None = Field(default=None, ge=0)  # bytes
    resources: dict[str, float] = Field(default_factory=dict)
    replicas: int = Field(default=1, ge=1, le=64)

    @classmethod
    def from_config(cls, config: Any) -> "RayOptions":
        """Read ``ray:`` from a ModelConfig (``ray: false`` keeps the model on the kernel's machine)."""
        raw = (getattr(config, "model_extra", None) or {}).get("ray") if config is not None else None
        if raw is False:
            return cls(enabled=False)
        if raw is None or raw is True:
            raw = {}
        if not isinstance(raw, dict):
            raise LoadError(f"model {getattr(config, 'name', '?')!r}: 'ray' must be a mapping or false")
        try:
            return cls(**raw)
        except ValidationError as exc:
            problems = "; ".join(f"ray.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise LoadError(f"model {getattr(config, 'name', '?')!r} has invalid Ray options: {problems}") from None

    def actor_options(self) -> dict[str, Any]:
        """Keyword arguments of ``ActorClass.options`` for one replica."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.resources:
            options["resources"] = dict(self.resources)
        if self.memory:
            options["memory"] = self.memory
        if self.replicas > 1:
            options["scheduling_strategy"] = "SPREAD"
        return options

    def describe(self) -> str:
        parts = [f"num_cpus={self.num_cpus:g}", f"num_gpus={self.num_gpus:g}"]
        if self.memory:
            parts.append(f"memory={self.memory}")
        parts += [f"{name}={amount:g}" for name, amount in sorted(self.resources.items())]
        return ", ".join(parts)


def fingerprint(spec: Any, config: Any, model_file: str) -> str:
    """A short hash of what the backend runs, so kernels share a backend only for the same model.

    Two kernels with different configs of one model name get different actors instead of one
    serving the other's model.
    """
    dump = config.model_dump(mode="json") if config is not None else {}
    blob = json.dumps({"backend": spec.name, "argv": list(spec.argv[1:]), "env": spec.env, "file": model_file,
                       "config": dump}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
