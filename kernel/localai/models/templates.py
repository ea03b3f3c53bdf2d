"""Prompt templates: Jinja2 ``chat``/``completion`` templates from model configs.

A template value is inline Jinja2 text, or the name of ``<models>/<value>.tmpl``. Chat
templates see ``messages`` (role/content dicts), ``system_prompt`` and
``add_generation_prompt``; completion templates see ``input`` (the prompt).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import BadRequest

_env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


@lru_cache(maxsize=128)
def _compile(source: str):
    return _env.from_string(source)


def template_source(value: str, models_path: Path) -> str:
    """Inline template text, or the contents of ``<models>/<value>.tmpl`` when that exists."""
    if "\n" not in value and "{" not in value:
        path = models_path / f"{value}.tmpl"
        root = os.path.realpath(models_path)
        # only files inside the models dir: a name that climbs out (``../x``) is inline text
        if os.path.realpath(path).startswith(root.rstrip(os.sep) + os.sep) and path.is_file():
            return path.read_text(encoding="utf-8")
    return value


def render(value: str, models_path: Path, **context: Any) -> str:
    """Render a template; a broken template is the request's problem, reported as 400."""
    try:
        return _compile(template_source(value, models_path)).render(**context)
    except TemplateError as exc:
        raise BadRequest(f"the model's prompt template failed: {exc}") from exc


def render_chat(value: str, models_path: Path, messages: list[dict[str, Any]], system_prompt: str = "") -> str:
    """Render a chat template over the conversation."""
    return render(value, models_path, messages=messages, system_prompt=system_prompt, add_generation_prompt=True)


def plain_chat_prompt(messages: list[dict[str, Any]]) -> str:
    """A simple role-prefixed prompt for models without any template."""
    lines = [f"{m.get('role', 'user')}: {m.get('content') or ''}" for m in messages]
    return "\n".join(lines) + "\nassistant:"
