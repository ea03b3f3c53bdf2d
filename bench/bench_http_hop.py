"""Benchmark: the cost of an HTTP backend hop. SmolLM2 streamed directly from one
``local-ai run`` (the upstream) and through a second one whose model is ``backend: http``
pointing at it. Prints time to first token and the time per streamed chunk for both."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from bench_llm import MESSAGES, measure  # noqa: E402

from localai.testing.server import LocalAIServer  # noqa: E402


def stream(client: httpx.Client, model: str, max_tokens: int):
    body = {"model": model, "messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"role"' not in line:
                yield line


def main(runs: int = 5, max_tokens: int = 128) -> None:
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        (root / "front").mkdir()
        with LocalAIServer(root / "upstream", args=["--threads", "2"]) as upstream:
            (root / "front" / "remote.yaml").write_text(yaml.safe_dump({
                "name": "remote", "backend": "http",
                "proxy": {"upstream_url": upstream.base_url + "/v1", "upstream_model": "smollm2"}}))
            with LocalAIServer(root / "front") as front, \
                    httpx.Client(base_url=upstream.base_url, timeout=300) as direct, \
                    httpx.Client(base_url=front.base_url, timeout=300) as hop:
                list(stream(direct, "smollm2", 8))
                list(stream(hop, "remote", 8))
                results = {"direct": [], "http hop": []}
                for _ in range(runs):  # alternate, so load changes hit both alike
                    results["direct"].append(measure(stream(direct, "smollm2", max_tokens), max_tokens))
                    results["http hop"].append(measure(stream(hop, "remote", max_tokens), max_tokens))
    summary = {}
    print(f"\nHTTP backend hop, SmolLM2, {max_tokens} tokens, median of {runs}")
    print(f"{'path':<12}{'TTFT ms':>10}{'ms/chunk':>10}{'tok/s':>9}")
    for name, rows in results.items():
        ttft = statistics.median(r["ttft_ms"] for r in rows)
        rate = statistics.median(r["decode_tps"] for r in rows)
        summary[name] = {"ttft_ms": ttft, "decode_tps": rate, "ms_per_chunk": 1000 / rate}
        print(f"{name:<12}{ttft:>10.1f}{1000 / rate:>10.2f}{rate:>9.1f}")
    added = summary["http hop"]["ttft_ms"] - summary["direct"]["ttft_ms"]
    per_chunk = summary["http hop"]["ms_per_chunk"] - summary["direct"]["ms_per_chunk"]
    print(f"added first-token latency {added:.1f} ms, added per-chunk time {per_chunk:.3f} ms")
    Path("bench-results").mkdir(exist_ok=True)
    Path("bench-results/http_hop.json").write_text(json.dumps(
        {"summary": summary, "added_ttft_ms": added, "added_ms_per_chunk": per_chunk}, indent=2))


if __name__ == "__main__":
    main()
