"""Benchmark: what a json_schema grammar costs (issue 16). SmolLM2 streamed through
``local-ai run``, the same chat request with and without ``response_format: json_schema``
(a schema that forces at least max_tokens of JSON), alternated run by run; decode tokens/s
between the first and the last streamed token, median of the runs. Both LLM backends:
``llama-cpp`` (xllamacpp: llama.cpp's server engine, its own schema → grammar) and
``llama-cpp-python`` (its GBNF port). Target: the default backend loses ≤ 10 %."""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench_llm import MESSAGES, measure  # noqa: E402

from localai.testing.server import LocalAIServer  # noqa: E402

SCHEMA = {"type": "object", "properties": {"people": {"type": "array", "minItems": 60, "items": {
    "type": "object", "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer"},
                                     "city": {"type": "string", "enum": ["Paris", "Rome", "Oslo", "Lima"]}},
    "required": ["name", "age", "city"]}}}, "required": ["people"]}


def stream(client: httpx.Client, max_tokens: int, schema: bool):
    body = {"model": "smollm2", "messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "seed": 1}
    if schema:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "people", "schema": SCHEMA}}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"role"' not in line:
                yield line


def run_backend(label: str, env: dict[str, str], runs: int, max_tokens: int) -> dict:
    with tempfile.TemporaryDirectory() as models, \
            LocalAIServer(Path(models), args=["--threads", "2"], env=env) as server, \
            httpx.Client(base_url=server.base_url, timeout=300) as client:
        list(stream(client, 8, False))
        list(stream(client, 8, True))  # the grammar compiled once (cached per schema)
        rows = {"plain": [], "json_schema": []}
        for _ in range(runs):
            rows["plain"].append(measure(stream(client, max_tokens, False), max_tokens))
            rows["json_schema"].append(measure(stream(client, max_tokens, True), max_tokens))
    plain = statistics.median(r["decode_tps"] for r in rows["plain"])
    constrained = statistics.median(r["decode_tps"] for r in rows["json_schema"])
    ttft = {k: statistics.median(r["ttft_ms"] for r in v) for k, v in rows.items()}
    pieces = statistics.median(r["pieces"] for r in rows["json_schema"])
    return {"backend": label, "plain_tps": plain, "json_schema_tps": constrained,
            "cost": 1 - constrained / plain, "ttft_ms": ttft, "json_schema_pieces": pieces}


def main(runs: int = 5, max_tokens: int = 128) -> None:
    results = [run_backend("llama-cpp (xllamacpp)", {}, runs, max_tokens),
               run_backend("llama-cpp-python", {"LOCALAI_DISABLE_PLUGINS": "xllamacpp"}, runs, max_tokens)]
    print(f"\njson_schema grammar cost, SmolLM2, {max_tokens} tokens, 2 threads, median of {runs}")
    print(f"{'backend':<24}{'plain tok/s':>12}{'schema tok/s':>13}{'cost':>8}{'TTFT plain':>12}{'TTFT schema':>12}")
    for r in results:
        print(f"{r['backend']:<24}{r['plain_tps']:>12.1f}{r['json_schema_tps']:>13.1f}{r['cost']:>8.1%}"
              f"{r['ttft_ms']['plain']:>10.1f}ms{r['ttft_ms']['json_schema']:>10.1f}ms")
    default = results[0]
    print(f"default backend: the grammar costs {default['cost']:.1%} of decode tok/s (target <= 10%): "
          f"{'met' if default['cost'] <= 0.10 else 'NOT met'}")
    Path("bench-results").mkdir(exist_ok=True)
    Path("bench-results/grammar.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(int(os.environ.get("LOCALAI_BENCH_RUNS", "5")))
