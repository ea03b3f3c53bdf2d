"""Helpers of the web UI tests: the template backend copy, the echo models, a closed port."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import yaml


ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "contrib" / "backend-template"
PAGES = ["backends", "models", "chat", "images", "tts", "transcribe"]
LONG = 60_000  # ms: installs pull from the registry


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def template_copy(tmp: Path) -> Path:
    target = tmp / "template"
    shutil.copytree(TEMPLATE, target, ignore=shutil.ignore_patterns("venv", "__pycache__", "test_*.py"))
    # some weight, so that the install has download progress to report
    (target / "weights.bin").write_bytes(bytes(range(256)) * 8 * 1024)
    return target


def echo_models(models: Path) -> None:
    models.mkdir(parents=True, exist_ok=True)
    specs = {
        "echo-chat": {"known_usecases": ["chat", "completion"], "options": ["token_delay:0.05"],
                      "template": {"use_tokenizer_template": True}},
        "echo-img": {"known_usecases": ["image"]},
        "echo-tts": {"known_usecases": ["tts"]},
        "echo-stt": {"known_usecases": ["transcript"]},
    }
    for name, extra in specs.items():
        (models / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "backend": "echo", "parameters": {"model": name}, **extra}))
