"""Benchmark: what each client dialect adds per streamed token over the OpenAI chat route.

One ``local-ai run`` with the deterministic echo backend (no model compute: the kernel's own
work dominates) streams the same ~N-token reply through ``/v1/chat/completions``,
``/v1/messages`` (Anthropic), ``/api/chat`` (Ollama) and ``/v1/responses``, interleaved run by
run. Measured: the kernel process's CPU time per streamed token (``/proc``), and the wall time
per token as the client sees it; the table shows each dialect's difference to the OpenAI route
(target: <= 0.1 ms per token). Writes ``bench-results/dialects.json``.

Run with ``tox -e bench`` or ``python bench/bench_dialects.py --tokens 2000 --runs 7``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from localai.testing.server import LocalAIServer, echo_backend_script


def routes(words: str) -> dict[str, tuple[str, dict]]:
    messages = [{"role": "user", "content": words}]
    return {
        "openai chat": ("/v1/chat/completions", {"model": "echo", "messages": messages, "stream": True}),
        "anthropic": ("/v1/messages", {"model": "echo", "messages": messages, "max_tokens": 100000, "stream": True}),
        "ollama": ("/api/chat", {"model": "echo", "messages": messages}),
        "responses": ("/v1/responses", {"model": "echo", "input": words, "stream": True, "store": False}),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one(client: httpx.Client, pid: int, path: str, body: dict) -> tuple[float, float, int]:
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    size = 0
    with client.stream("POST", path, json=body) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            size += len(chunk)
    return cpu_seconds(pid) - cpu0, time.perf_counter() - t0, size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    words = " ".join(f"w{i}" for i in range(args.tokens))
    tokens = args.tokens + 3  # "echo:", "user:", the words, "assistant:"
    root = Path(tempfile.mkdtemp(prefix="bench-dialects-"))
    models = root / "models"
    models.mkdir()
    (models / "echo.yaml").write_text(yaml.safe_dump({"name": "echo", "backend": "echo",
                                                       "parameters": {"model": "echo"},
                                                       "known_usecases": ["chat"]}))
    env = {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{echo_backend_script(root / 'echo')}",
           "LOCALAI_LOG_LEVEL": "warning"}
    results: dict[str, dict[str, list[float]]] = {}
    with LocalAIServer(models, env=env, cwd=root) as server, \
            httpx.Client(base_url=server.base_url, timeout=120) as client:
        table = routes(words)
        for name, (path, body) in table.items():  # warm up: load the model, first-request costs
            one(client, server.pid, path, body)
        for _ in range(args.runs):
            for name, (path, body) in table.items():
                cpu, wall, size = one(client, server.pid, path, body)
                entry = results.setdefault(name, {"cpu_us": [], "wall_us": [], "bytes": []})
                entry["cpu_us"].append(cpu / tokens * 1e6)
                entry["wall_us"].append(wall / tokens * 1e6)
                entry["bytes"].append(size / tokens)
    report = {name: {key: statistics.median(values) for key, values in entry.items()}
              for name, entry in results.items()}
    base = report["openai chat"]
    print(f"\nper streamed token, median of {args.runs} runs of {tokens} tokens (echo backend; "
          f"{os.cpu_count()} CPUs)")
    print("| route | kernel CPU µs/token | Δ vs OpenAI | wall µs/token | Δ vs OpenAI | bytes/token |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in report.items():
        print(f"| {name} | {row['cpu_us']:.1f} | {row['cpu_us'] - base['cpu_us']:+.1f} | {row['wall_us']:.1f} | "
              f"{row['wall_us'] - base['wall_us']:+.1f} | {row['bytes']:.0f} |")
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "dialects.json").write_text(json.dumps({"tokens": tokens, "runs": args.runs, "median": report,
                                                   "raw": results}, indent=1))
    worst = max(row["cpu_us"] - base["cpu_us"] for name, row in report.items() if name != "openai chat")
    print(f"worst dialect overhead: {worst:+.1f} µs/token of kernel CPU (target <= 100)")
    sys.exit(0)


if __name__ == "__main__":
    main()
