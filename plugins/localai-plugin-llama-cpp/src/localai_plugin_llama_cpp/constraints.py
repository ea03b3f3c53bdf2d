"""What limits generated text: stop words (found, and held back while they may be starting) and
grammars compiled from JSON schemas."""

from __future__ import annotations

import functools


def find_stop(text: str, stops: list[str]) -> int:
    """Index of the earliest stop word in ``text``, or -1."""
    best = -1
    for s in stops:
        i = text.find(s)
        if i != -1 and (best == -1 or i < best):
            best = i
    return best


def partial_stop(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of ``text`` that starts some stop word."""
    keep = 0
    for s in stops:
        for i in range(min(len(s) - 1, len(text)), keep, -1):
            if text.endswith(s[:i]):
                keep = i
                break
    return keep


@functools.lru_cache(maxsize=64)
def schema_grammar(schema_json: str) -> str:
    """GBNF for a JSON schema (llama-cpp-python's port of llama.cpp's converter). Its string
    characters exclude only ``"`` and ``\\``; JSON forbids raw control characters in strings too
    (as llama.cpp's own converter has it), or a sampled newline makes the reply unparsable."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(schema_json).replace('char ::= [^"\\\\] |', 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |')
