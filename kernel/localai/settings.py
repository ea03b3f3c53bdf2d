"""Settings: the server's configuration, from CLI flags and LocalAI's environment names.

This is the one place the kernel reads its environment: the code that uses a setting is handed
the value (backend processes, which read their own environment, excepted)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

HF_DEFAULT = "https://huggingface.co"
CAPABILITY_RUN_FILE = "/run/localai/capability"


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable ("1", "true", "yes", "on" are true)."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str) -> list[str]:
    """Read a comma- or whitespace-separated list from the environment."""
    return split_list(os.environ.get(name, ""))


def split_list(value: str | None) -> list[str]:
    """Split "a,b c" into ["a", "b", "c"]."""
    if not value:
        return []
    return [item for item in value.replace(",", " ").split() if item]


def env_number(name: str, default: float) -> float:
    """Read a number from the environment; unset or empty gives ``default`` (0 stays 0)."""
    value = (os.environ.get(name) or "").strip()
    return float(value) if value else default


def split_keys(value: str | None) -> list[str]:
    """Split a comma-separated list of API keys (keys may not contain commas)."""
    return [key.strip() for key in (value or "").split(",") if key.strip()]


def cors_origins_from_env() -> list[str]:
    """``LOCALAI_CORS_ALLOW_ORIGINS`` or LocalAI's ``CORS_ALLOW_ORIGINS``; LocalAI's ``CORS=true`` alone means "*"."""
    listed = env_list("LOCALAI_CORS_ALLOW_ORIGINS") or env_list("CORS_ALLOW_ORIGINS")
    if listed:
        return listed
    cors = (os.environ.get("CORS") or "").strip()
    if cors.lower() in ("1", "true", "yes", "on"):
        return ["*"]
    return [] if cors.lower() in ("", "0", "false", "no", "off") else split_list(cors)


def optional_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def parse_duration(value: str | float | int | None, default: float = 0.0) -> float:
    """Parse "15m", "30s", "2h", "500ms" or a number of seconds."""
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip().lower()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * factor
    return float(text)


def parse_size(value: str | int | None, default: int = 0) -> int:
    """Parse "4GB", "512MiB", "100k" or a number of bytes."""
    if value is None or value == "":
        return default
    if isinstance(value, int):
        return value
    text = value.strip().lower().rstrip("b").rstrip("i")
    for suffix, factor in (("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * factor)
    return int(float(text))


@dataclass
class Settings:
    """Everything the kernel needs to know at start-up; kept on the app as ``app.extensions["localai"]``."""

    address: str = "127.0.0.1:8080"
    ollama_address: str = ""  # a second listener serving only Ollama's routes (e.g. 127.0.0.1:11434)
    models_path: Path = Path("models")
    backends_path: Path = Path("backends")
    backends_system_path: Path | None = Path("/var/lib/local-ai/backends")
    backend_galleries: str | None = None  # LocalAI's JSON list; None = the default gallery
    galleries: str | None = None  # model galleries, LocalAI's JSON list; None = the default gallery
    insecure_registries: list[str] = field(default_factory=list)  # plain-http OCI registries besides loopback
    hf_endpoint: str = HF_DEFAULT  # where hf:// and huggingface.co URLs go (a mirror)
    hf_token: str = field(default="", repr=False)  # sent to hf_endpoint only
    force_meta_backend_capability: str = ""  # meta backends install this build (else detected)
    force_meta_backend_capability_run_file: str = CAPABILITY_RUN_FILE  # a file naming the capability
    grpc_auth_token: str = field(default="", repr=False)  # sent to remote backends (not ones the kernel starts)
    external_backends: list[str] = field(default_factory=list)  # installed at start-up
    max_backend_bytes: int = 0  # refuse backend images larger than this (0 = no limit)
    generated_content_path: Path | None = None  # generated images/audio (default: a temp dir)
    upload_path: Path | None = None  # uploads handed to backends (default: a temp dir)
    threads: int = 0
    context_size: int = 0
    log_level: str = "info"
    external_grpc_backends: list[str] = field(default_factory=list)
    single_active_backend: bool = False
    max_active_backends: int = 0
    idle_timeout: float = 0.0  # seconds; 0 disables the idle watchdog
    watchdog_interval: float = 5.0
    health_timeout: float = 40.0
    load_timeout: float = 600.0
    stop_grace: float = 10.0
    free_timeout: float = 30.0  # Free may save prompt KV to disk first
    load_plugins: list[str] | None = None
    disable_plugins: list[str] = field(default_factory=list)
    strict_plugins: bool = False
    disable_webui: bool = False
    api_keys: list[str] = field(default_factory=list)  # empty = no authentication
    allow_insecure_bind: bool = False  # serve a non-loopback address without API keys
    max_concurrent_per_model: int = 0  # 0 = unlimited
    max_queue_per_model: int = 64
    max_concurrent_backend_requests: int = 1024  # across every model (admitted + queued)
    load_failure_cooldown: float = 10.0  # seconds a model that failed to load answers 503
    upload_limit_mb: float = 15.0  # request bodies (JSON); 0 = no limit
    audio_upload_limit_mb: float = 100.0  # audio uploads (transcriptions, translations)
    shutdown_timeout: float = 30.0  # SIGTERM: how long in-flight requests may finish
    cors_allow_origins: list[str] = field(default_factory=list)  # cross-origin browsers allowed ("*" = any)
    allowed_hosts: list[str] = field(default_factory=list)  # Host names served besides loopback ones
    allow_local_urls: list[Path] = field(default_factory=list)  # dirs API requests may name as file:// or paths
    allow_backend_uris: bool = False  # /backends/apply may install from a URI, not only from the galleries
    allow_private_urls: bool = False  # API requests may make the server fetch from loopback/private addresses
    kv_cache_dir: Path | None = None  # prompt KV saved across unloads (default: <models>/.kv-cache)
    kv_cache_size: int = 4 << 30  # bytes the KV cache dir may hold (0 = off)
    data_path: Path | None = None  # server state: install ledger, stored responses [<models>/.localai-data]
    responses_store_max: int = 1000  # stored Responses kept (the oldest go first)
    responses_store_ttl: float = 30 * 86400  # seconds a stored Response is kept
    model_fallback: str = ""  # the model that answers unknown model names ("": unknown names are a 404)

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Build settings from LocalAI's environment variables, then apply overrides."""
        load = os.environ.get("LOCALAI_LOAD_PLUGINS")
        values = dict(
            address=os.environ.get("LOCALAI_ADDRESS") or os.environ.get("ADDRESS") or "127.0.0.1:8080",
            ollama_address=(os.environ.get("LOCALAI_OLLAMA_ADDRESS") or "").strip(),
            models_path=Path(os.environ.get("LOCALAI_MODELS_PATH") or os.environ.get("MODELS_PATH") or "models"),
            backends_path=Path(
                os.environ.get("LOCALAI_BACKENDS_PATH") or os.environ.get("BACKENDS_PATH") or "backends"
            ),
            backends_system_path=Path(
                os.environ.get("LOCALAI_BACKENDS_SYSTEM_PATH") or os.environ.get("BACKEND_SYSTEM_PATH")
                or "/var/lib/local-ai/backends"
            ),
            backend_galleries=os.environ.get("LOCALAI_BACKEND_GALLERIES") or os.environ.get("BACKEND_GALLERIES"),
            galleries=os.environ.get("LOCALAI_GALLERIES") or os.environ.get("GALLERIES"),
            insecure_registries=split_keys(os.environ.get("LOCALAI_INSECURE_REGISTRIES")),
            hf_endpoint=os.environ.get("HF_ENDPOINT") or os.environ.get("HF_MIRROR") or HF_DEFAULT,
            hf_token=os.environ.get("HF_TOKEN") or "",
            force_meta_backend_capability=(os.environ.get("LOCALAI_FORCE_META_BACKEND_CAPABILITY") or "").strip(),
            force_meta_backend_capability_run_file=(
                os.environ.get("LOCALAI_FORCE_META_BACKEND_CAPABILITY_RUN_FILE", CAPABILITY_RUN_FILE)
            ),
            grpc_auth_token=os.environ.get("LOCALAI_GRPC_AUTH_TOKEN") or "",
            external_backends=env_list("LOCALAI_EXTERNAL_BACKENDS"),
            max_backend_bytes=int(os.environ.get("LOCALAI_MAX_BACKEND_BYTES") or 0),
            generated_content_path=optional_path("LOCALAI_GENERATED_CONTENT_PATH"),
            upload_path=optional_path("LOCALAI_UPLOAD_PATH"),
            threads=int(os.environ.get("LOCALAI_THREADS") or 0),
            context_size=int(os.environ.get("LOCALAI_CONTEXT_SIZE") or 0),
            log_level=os.environ.get("LOCALAI_LOG_LEVEL") or "info",
            external_grpc_backends=env_list("LOCALAI_EXTERNAL_GRPC_BACKENDS"),
            single_active_backend=env_bool("LOCALAI_SINGLE_ACTIVE_BACKEND"),
            max_active_backends=int(os.environ.get("LOCALAI_MAX_ACTIVE_BACKENDS") or 0),
            idle_timeout=(
                parse_duration(os.environ.get("LOCALAI_WATCHDOG_IDLE_TIMEOUT"), 15 * 60)
                if env_bool("LOCALAI_WATCHDOG_IDLE")
                else 0.0
            ),
            watchdog_interval=parse_duration(os.environ.get("LOCALAI_WATCHDOG_INTERVAL"), 5.0),
            health_timeout=parse_duration(os.environ.get("LOCALAI_BACKEND_HEALTH_TIMEOUT"), 40.0),
            stop_grace=parse_duration(os.environ.get("LOCALAI_BACKEND_STOP_GRACE"), 10.0),
            load_plugins=split_list(load) if load is not None else None,
            disable_plugins=env_list("LOCALAI_DISABLE_PLUGINS"),
            strict_plugins=env_bool("LOCALAI_STRICT_PLUGINS"),
            disable_webui=env_bool("LOCALAI_DISABLE_WEBUI"),
            api_keys=split_keys(os.environ.get("LOCALAI_API_KEY") or os.environ.get("API_KEY")),
            allow_insecure_bind=env_bool("LOCALAI_ALLOW_INSECURE_BIND"),
            max_concurrent_per_model=int(env_number("LOCALAI_MAX_CONCURRENT_PER_MODEL", 0)),
            max_queue_per_model=int(env_number("LOCALAI_MAX_QUEUE_PER_MODEL", 64)),
            max_concurrent_backend_requests=int(env_number("LOCALAI_MAX_CONCURRENT_BACKEND_REQUESTS", 1024)),
            load_failure_cooldown=parse_duration(os.environ.get("LOCALAI_MODEL_LOAD_FAILURE_COOLDOWN"), 10.0),
            upload_limit_mb=env_number("LOCALAI_UPLOAD_LIMIT", 15),
            audio_upload_limit_mb=env_number("LOCALAI_AUDIO_UPLOAD_LIMIT", 100),
            shutdown_timeout=parse_duration(os.environ.get("LOCALAI_SHUTDOWN_TIMEOUT"), 30.0),
            cors_allow_origins=cors_origins_from_env(),
            allowed_hosts=env_list("LOCALAI_ALLOWED_HOSTS"),
            allow_local_urls=[Path(p) for p in env_list("LOCALAI_ALLOW_LOCAL_URLS")],
            allow_backend_uris=env_bool("LOCALAI_ALLOW_BACKEND_URIS"),
            allow_private_urls=env_bool("LOCALAI_ALLOW_PRIVATE_URLS"),
            kv_cache_dir=optional_path("LOCALAI_KV_CACHE_DIR"),
            kv_cache_size=parse_size(os.environ.get("LOCALAI_KV_CACHE_SIZE"), 4 << 30),
            data_path=optional_path("LOCALAI_DATA_PATH"),
            responses_store_max=int(env_number("LOCALAI_RESPONSES_STORE_MAX", 1000)),
            responses_store_ttl=env_number("LOCALAI_RESPONSES_STORE_TTL", 30 * 86400),
            model_fallback=(os.environ.get("LOCALAI_MODEL_FALLBACK") or "").strip(),
        )
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    @property
    def kv_cache_path(self) -> Path:
        """Where llama.cpp backends keep prompt KV across unloads (absolute)."""
        return (self.kv_cache_dir or Path(self.models_path) / ".kv-cache").resolve()

    @property
    def state_path(self) -> Path:
        """The server's state directory: ``data_path``, else ``<models>/.localai-data``."""
        return self.data_path or Path(self.models_path) / ".localai-data"

    def backend_env(self) -> dict[str, str]:
        """What every backend process is told about the server's settings."""
        return {"LOCALAI_KV_CACHE_DIR": str(self.kv_cache_path), "LOCALAI_KV_CACHE_SIZE": str(self.kv_cache_size)}

    @property
    def max_loaded(self) -> int:
        """How many models may be loaded at once (0 = unlimited)."""
        return 1 if self.single_active_backend else self.max_active_backends

    @property
    def host_port(self) -> tuple[str, int]:
        """The bind address split into host and port; an empty host (":8080") binds all interfaces."""
        host, _, port = self.address.rpartition(":")
        return (host or "0.0.0.0"), int(port or 8080)

    def listeners(self) -> list["Settings"]:
        """The settings of every address served: ``address``, then ``ollama_address`` when set."""
        extra = [replace(self, address=self.ollama_address, ollama_address="")] if self.ollama_address else []
        return [self, *extra]
