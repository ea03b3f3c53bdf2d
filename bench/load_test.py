"""Bounded load test: concurrent streaming chats, then many non-streaming chats, against the
real SmolLM2 model through ``local-ai run``.

Every request must end as exactly one of: success (a stream that sends content and
``data: [DONE]``; a 200 JSON reply with content) or 503 with ``Retry-After``. Anything else
(another status, an error event, a stream without ``[DONE]``, an exception, a timeout, a request
never sent before the global deadline) is a failure. Reports per phase the counts, throughput,
latency (and TTFT) p50/p99, and the peak RSS of the kernel and backend processes.

Run ``python bench/load_test.py`` (``--help`` for options). Prints a table and writes
``bench-results/load.json``. The backend serves one request at a time, so on 2 cores the
default run (64 streams of 16 tokens, 500 requests of 8) takes about 10 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx

MODEL = "smollm2"
RESULTS = Path(__file__).resolve().parent.parent / "bench-results" / "load.json"


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """Samples VmRSS of named pids every ``interval`` seconds and keeps each one's peak (KiB)."""

    def __init__(self, interval: float = 0.1):
        super().__init__(daemon=True, name="rss-sampler")
        self.interval, self.pids, self.peak_kb = interval, {}, {}
        self._halt = threading.Event()

    def watch(self, label: str, pid: int | None) -> None:
        if pid:
            self.pids[label] = pid

    def sample(self) -> None:
        for label, pid in list(self.pids.items()):
            self.peak_kb[label] = max(self.peak_kb.get(label, 0), rss_kb(pid))

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> dict:
        self._halt.set()
        self.join()
        self.sample()
        return {f"{label}_peak_rss_mb": round(kb / 1024, 1) for label, kb in self.peak_kb.items()}


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile, or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def body(i: int, max_tokens: int, stream: bool) -> dict:
    b = {"model": MODEL, "max_tokens": max_tokens, "temperature": 0.7, "seed": i, "stream": stream,
         "messages": [{"role": "user", "content": f"Request {i}: write a short poem about the sea."}]}
    if stream:
        b["stream_options"] = {"include_usage": True}
    return b


def busy(response: httpx.Response, start: float) -> dict:
    """A 503 is an accepted outcome only with a Retry-After header."""
    if response.headers.get("retry-after"):
        return {"outcome": "503", "latency": time.perf_counter() - start}
    return {"outcome": "failed", "detail": "503 without Retry-After"}


async def stream_chat(client: httpx.AsyncClient, i: int, max_tokens: int) -> dict:
    start = time.perf_counter()
    ttft, pieces, usage, done = None, 0, None, False
    async with client.stream("POST", "/v1/chat/completions", json=body(i, max_tokens, True)) as response:
        if response.status_code == 503:
            await response.aread()
            return busy(response, start)
        if response.status_code != 200:
            await response.aread()
            return {"outcome": "failed", "detail": f"HTTP {response.status_code}: {response.text[:200]}"}
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:].strip()
            if data == "[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if "error" in chunk:
                return {"outcome": "failed", "detail": f"error event: {str(chunk['error'])[:200]}"}
            usage = chunk.get("usage") or usage
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                pieces += 1
                ttft = ttft if ttft is not None else time.perf_counter() - start
    if not done or not pieces:
        return {"outcome": "failed", "detail": "stream ended without [DONE]" if not done else "stream without content"}
    tokens = (usage or {}).get("completion_tokens") or pieces
    return {"outcome": "ok", "latency": time.perf_counter() - start, "ttft": ttft, "tokens": tokens}


async def plain_chat(client: httpx.AsyncClient, i: int, max_tokens: int) -> dict:
    start = time.perf_counter()
    response = await client.post("/v1/chat/completions", json=body(i, max_tokens, False))
    if response.status_code == 503:
        return busy(response, start)
    if response.status_code != 200:
        return {"outcome": "failed", "detail": f"HTTP {response.status_code}: {response.text[:200]}"}
    reply = response.json()
    content = reply["choices"][0]["message"].get("content")
    if not content:
        return {"outcome": "failed", "detail": "200 without content"}
    return {"outcome": "ok", "latency": time.perf_counter() - start,
            "tokens": (reply.get("usage") or {}).get("completion_tokens", 0)}


async def bounded(call, client, i: int, max_tokens: int, timeout: float, deadline: float) -> dict:
    """One request, ended by its timeout or the global deadline; any exception is a failure."""
    left = min(timeout, deadline - time.monotonic())
    if left <= 0:
        return {"outcome": "failed", "detail": "not sent before the global deadline"}
    try:
        return await asyncio.wait_for(call(client, i, max_tokens), left)
    except (asyncio.TimeoutError, TimeoutError):
        return {"outcome": "failed", "detail": f"timed out after {left:.0f}s"}
    except Exception as exc:  # noqa: BLE001 - every other ending is a failure to report
        return {"outcome": "failed", "detail": f"{type(exc).__name__}: {exc}"[:200]}


def summarize(results: list[dict], wall: float) -> dict:
    ok = [r for r in results if r["outcome"] == "ok"]
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    latencies = [r["latency"] for r in ok]
    ttfts = [r["ttft"] for r in ok if r.get("ttft") is not None]
    tokens = sum(r["tokens"] for r in ok)
    summary = {
        "requests": len(results), "ok": len(ok),
        "busy_503": sum(r["outcome"] == "503" for r in results),
        "failed": sum(r["outcome"] == "failed" for r in results),
        "wall_s": round(wall, 2), "ok_per_s": round(len(ok) / wall, 2), "requests_per_s": round(len(results) / wall, 2),
        "tokens": tokens, "tokens_per_s": round(tokens / wall, 1),
        "latency_p50_ms": ms(percentile(latencies, 50)), "latency_p99_ms": ms(percentile(latencies, 99)),
        "busy_latency_p50_ms": ms(percentile([r["latency"] for r in results if r["outcome"] == "503"], 50)),
        "failures": sorted({r["detail"] for r in results if r["outcome"] == "failed"})[:10],
    }
    if ttfts:
        summary.update(ttft_p50_ms=ms(percentile(ttfts, 50)), ttft_p99_ms=ms(percentile(ttfts, 99)))
    return summary


async def _load(base_url: str, streams: int, requests: int, concurrency: int, max_tokens: int,
                request_max_tokens: int, timeout: float, deadline_s: float, sampler: RssSampler) -> dict:
    deadline = time.monotonic() + deadline_s
    limits = httpx.Limits(max_connections=max(streams, concurrency) + 8, max_keepalive_connections=max(streams, concurrency))
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(timeout), limits=limits) as client:
        warm = await bounded(plain_chat, client, 0, 2, timeout, deadline)  # loads the model
        if warm["outcome"] != "ok":
            raise RuntimeError(f"warm-up request failed: {warm}")
        for model in (await client.get("/system")).json()["loaded_models"]:
            if model["id"] == MODEL:
                sampler.watch("backend", model["pid"])
        sampler.sample()

        start = time.monotonic()
        results = await asyncio.gather(*(bounded(stream_chat, client, i, max_tokens, timeout, deadline)
                                         for i in range(1, streams + 1)))
        stream_phase = summarize(results, time.monotonic() - start)

        start, counter, results = time.monotonic(), iter(range(streams + 1, streams + 1 + requests)), []

        async def worker() -> None:
            for i in counter:  # a shared iterator: every request sent exactly once
                results.append(await bounded(plain_chat, client, i, request_max_tokens, timeout, deadline))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        request_phase = summarize(results, time.monotonic() - start)

        # Afterwards: nothing left in flight (a stream's slot is given back as it ends), and still serving.
        in_flight = None
        for _ in range(50):
            in_flight = {m["id"]: m["in_flight"] for m in (await client.get("/system")).json()["loaded_models"]}
            if not any(in_flight.values()):
                break
            await asyncio.sleep(0.1)
        after = await bounded(plain_chat, client, 0, 2, timeout, time.monotonic() + timeout)
    return {"streams": stream_phase, "requests": request_phase, "in_flight_after": in_flight,
            "serves_after": after["outcome"] == "ok"}


def run_load(base_url: str, *, streams: int = 64, requests: int = 500, concurrency: int = 32, max_tokens: int = 16,
             request_max_tokens: int = 8, timeout: float = 300.0, deadline: float = 900.0,
             kernel_pid: int | None = None) -> dict:
    """Phase 1: ``streams`` concurrent streaming chats; phase 2: ``requests`` non-streaming chats,
    ``concurrency`` in flight. Bounded by per-request ``timeout`` and the global ``deadline`` (s)."""
    sampler = RssSampler()
    sampler.watch("kernel", kernel_pid)
    sampler.start()
    try:
        report = asyncio.run(_load(base_url, streams, requests, concurrency, max_tokens, request_max_tokens,
                                   timeout, deadline, sampler))
    finally:
        memory = sampler.stop()
    report["memory"] = memory
    report["settings"] = {"streams": streams, "requests": requests, "concurrency": concurrency,
                          "max_tokens": max_tokens, "request_max_tokens": request_max_tokens,
                          "timeout_s": timeout, "deadline_s": deadline}
    return report


def table(report: dict) -> str:
    rows = [("phase", "ok", "503", "failed", "wall s", "ok/s", "tok/s", "p50 ms", "p99 ms", "ttft p50", "ttft p99")]
    for name in ("streams", "requests"):
        p = report[name]
        rows.append((name, p["ok"], p["busy_503"], p["failed"], p["wall_s"], p["ok_per_s"], p["tokens_per_s"],
                     p["latency_p50_ms"], p["latency_p99_ms"], p.get("ttft_p50_ms", "-"), p.get("ttft_p99_ms", "-")))
    lines = ["  ".join(f"{str(c):>9}" for c in row) for row in rows]
    lines.append("peak RSS: " + ", ".join(f"{k} {v} MB" for k, v in report["memory"].items()))
    lines.append(f"in flight after: {report['in_flight_after']}; serves after: {report['serves_after']}")
    for name in ("streams", "requests"):
        for failure in report[name]["failures"]:
            lines.append(f"{name} failure: {failure}")
    return "\n".join(lines)


def main() -> None:
    from localai.testing.server import LocalAIServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--request-max-tokens", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    parser.add_argument("--deadline", type=float, default=900.0, help="global, seconds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-concurrent", default="4", help="LOCALAI_MAX_CONCURRENT_PER_MODEL (0 = unlimited)")
    parser.add_argument("--max-queue", default="64", help="LOCALAI_MAX_QUEUE_PER_MODEL")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    env = {"LOCALAI_MAX_CONCURRENT_PER_MODEL": args.max_concurrent, "LOCALAI_MAX_QUEUE_PER_MODEL": args.max_queue}
    with tempfile.TemporaryDirectory() as models, \
            LocalAIServer(Path(models), args=["--threads", str(args.threads)], env=env) as server:
        report = run_load(server.base_url, streams=args.streams, requests=args.requests, concurrency=args.concurrency,
                          max_tokens=args.max_tokens, request_max_tokens=args.request_max_tokens,
                          timeout=args.timeout, deadline=args.deadline, kernel_pid=server.pid)
    report["settings"].update(threads=args.threads, cpus=os.cpu_count(), **env)
    print(table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
