"""A request shaped like Claude Code 2.1.x's first ``POST /v1/messages?beta=true``: messages
``[user, system]``, 15 tools with JSON schemas and long descriptions (about 60 kB, as Claude Code's
are), ``thinking`` adaptive, ``context_management``, ``output_config.effort``, ``max_tokens: 32000``."""

from __future__ import annotations

from typing import Any

SCHEMA = "http://json-schema.org/draft-07/schema#"
PROSE = ("Usage notes: read the instructions carefully, prefer the dedicated tools over shell commands, "
         "quote paths that contain spaces, and never guess at values the user did not give. ")


def obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False,
            "$schema": SCHEMA}


def s(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def n(description: str) -> dict[str, Any]:
    return {"type": "number", "description": description}


def b(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


TODO = {"type": "object", "properties": {"content": s("the task", minLength=1),
                                         "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
                                         "activeForm": s("present continuous form", minLength=1)},
        "required": ["content", "status", "activeForm"], "additionalProperties": False}
QUESTION = {"type": "object", "properties": {
    "question": s("the question"), "header": s("a short label"), "multiSelect": b("several answers"),
    "options": {"type": "array", "minItems": 2, "maxItems": 4, "items": {
        "type": "object", "properties": {"label": s("the option"), "description": s("what it means")},
        "required": ["label", "description"], "additionalProperties": False}}},
    "required": ["question", "header", "options", "multiSelect"], "additionalProperties": False}

TOOLS: list[tuple[str, int, dict[str, Any]]] = [  # name, description length (in PROSE units), schema
    ("Task", 40, obj({"description": s("a 3-5 word description"), "prompt": s("the task"),
                      "subagent_type": s("the agent"), "model": {"type": "string", "enum": ["sonnet", "opus", "haiku"]},
                      "resume": s("an agent id"), "run_in_background": b("in the background")},
                     ["description", "prompt", "subagent_type"])),
    ("Bash", 90, obj({"command": s("the command"), "timeout": n("milliseconds, at most 600000"),
                      "description": s("what it does"), "run_in_background": b("in the background"),
                      "dangerouslyDisableSandbox": b("no sandbox")}, ["command"])),
    ("Glob", 8, obj({"pattern": s("the glob"), "path": s("the directory")}, ["pattern"])),
    ("Grep", 25, obj({"pattern": s("a regex"), "path": s("file or directory"), "glob": s("filter files"),
                      "output_mode": {"type": "string", "enum": ["content", "files_with_matches", "count"]},
                      "-B": n("lines before"), "-A": n("lines after"), "-C": n("context lines"),
                      "-n": b("line numbers"), "-i": b("case insensitive"), "type": s("file type"),
                      "head_limit": n("first N"), "offset": n("skip N"), "multiline": b("across lines")},
                     ["pattern"])),
    ("ExitPlanMode", 10, obj({"allowedPrompts": {"type": "array", "items": {
        "type": "object", "properties": {"tool": {"type": "string", "enum": ["Bash"]}, "prompt": s("action")},
        "required": ["tool", "prompt"], "additionalProperties": False}}}, [])),
    ("Read", 20, obj({"file_path": s("absolute path"), "offset": n("first line"), "limit": n("lines"),
                      "pages": s("page range")}, ["file_path"])),
    ("Edit", 15, obj({"file_path": s("absolute path"), "old_string": s("text to replace"),
                      "new_string": s("replacement"), "replace_all": {"type": "boolean", "default": False}},
                     ["file_path", "old_string", "new_string"])),
    ("Write", 10, obj({"file_path": s("absolute path"), "content": s("the content")}, ["file_path", "content"])),
    ("NotebookEdit", 8, obj({"notebook_path": s("absolute path"), "cell_id": s("the cell"),
                             "new_source": s("the source"), "cell_type": {"type": "string", "enum": ["code", "markdown"]},
                             "edit_mode": {"type": "string", "enum": ["replace", "insert", "delete"]}},
                            ["notebook_path", "new_source"])),
    ("WebFetch", 15, obj({"url": s("the URL", format="uri"), "prompt": s("what to extract")}, ["url", "prompt"])),
    ("TodoWrite", 80, obj({"todos": {"type": "array", "items": TODO, "description": "the list"}}, ["todos"])),
    ("WebSearch", 12, obj({"query": s("the query", minLength=2),
                           "allowed_domains": {"type": "array", "items": {"type": "string"}},
                           "blocked_domains": {"type": "array", "items": {"type": "string"}}}, ["query"])),
    ("TaskOutput", 6, obj({"task_id": s("the task"), "block": {"type": "boolean", "default": True},
                           "timeout": {"type": "number", "minimum": 0, "maximum": 600000, "default": 30000}},
                          ["task_id", "block", "timeout"])),
    ("AskUserQuestion", 12, obj({"questions": {"type": "array", "minItems": 1, "maxItems": 4, "items": QUESTION},
                                 "answers": {"type": "object", "additionalProperties": {"type": "string"}}},
                                ["questions"])),
    ("Skill", 12, obj({"skill": s("the skill"), "args": s("its arguments")}, ["skill"])),
]


def tools() -> list[dict[str, Any]]:
    return [{"name": name, "description": f"{name}: " + PROSE * size, "input_schema": schema}
            for name, size, schema in TOOLS]


def first_request(model: str, stream: bool = True) -> dict[str, Any]:
    return {
        "model": model, "max_tokens": 32000, "stream": stream,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>context</system-reminder>"},
                                         {"type": "text", "text": "list the files",
                                          "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": "<env>Working directory: /tmp/project\nPlatform: linux</env>"},
        ],
        "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
                   {"type": "text", "text": "You are an interactive CLI tool.", "cache_control": {"type": "ephemeral"}}],
        "tools": tools(),
        "metadata": {"user_id": "user_0123_account__session_4567"},
        "thinking": {"type": "adaptive", "display": "summarized"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
    }
