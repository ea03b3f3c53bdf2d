"""Image latency: the gRPC diffusers backend vs diffusers in-process.

Usage: python bench.py [--model DIR] [--sizes 64,256] [--steps 4] [--runs 3] [--threads 2]

Without --model a tiny random-weight Stable Diffusion pipeline is built in a temp dir
(``localai_plugin_diffusers.tiny``). Both sides: float32 on CPU, the same scheduler, seed and
thread count, and the image written as PNG. One warm-up per size and side, then runs
alternate between the sides so background load hits both alike; the median is reported.
gRPC time is the GenerateImage call as the kernel makes it (request to PNG on disk).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a cat"


class InProcess:
    """The pipeline loaded in this process, as the backend loads it."""

    def __init__(self, model: str, threads: int) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import diffusers
        import torch
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        torch.set_num_threads(threads)
        self.torch = torch
        self.pipe = diffusers.DiffusionPipeline.from_pretrained(model, dtype=torch.float32)
        self.pipe.set_progress_bar_config(disable=True)

    def run(self, size: int, steps: int, seed: int, dst: str) -> float:
        t0 = time.perf_counter()
        image = self.pipe(PROMPT, width=size, height=size, num_inference_steps=steps, guidance_scale=7.5,
                          generator=self.torch.Generator("cpu").manual_seed(seed)).images[0]
        image.save(dst, format="PNG")
        return time.perf_counter() - t0


class Grpc:
    """``python -m localai_plugin_diffusers`` over real gRPC."""

    def __init__(self, model: str, threads: int) -> None:
        import grpc

        from localai.proto import backend_pb2, backend_pb2_grpc

        self.pb = backend_pb2
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            addr = f"127.0.0.1:{s.getsockname()[1]}"
        self.proc = subprocess.Popen([sys.executable, "-m", "localai_plugin_diffusers", "--addr", addr],
                                     stderr=subprocess.DEVNULL)
        self.channel = grpc.insecure_channel(addr)
        self.stub = backend_pb2_grpc.BackendStub(self.channel)
        grpc.channel_ready_future(self.channel).result(timeout=60)
        res = self.stub.LoadModel(backend_pb2.ModelOptions(ModelFile=model, Threads=threads), timeout=300)
        if not res.success:
            sys.exit(f"LoadModel failed: {res.message}")

    def run(self, size: int, steps: int, seed: int, dst: str) -> float:
        t0 = time.perf_counter()
        res = self.stub.GenerateImage(self.pb.GenerateImageRequest(
            positive_prompt=PROMPT, width=size, height=size, step=steps, seed=seed, dst=dst), timeout=600)
        took = time.perf_counter() - t0
        assert res.success, res.message
        return took

    def close(self) -> None:
        self.channel.close()
        self.proc.terminate()
        self.proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="diffusers model dir (default: build the tiny pipeline)")
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-diffusers-") as tmp:
        model = args.model
        if not model:
            from localai_plugin_diffusers.tiny import build_tiny_pipeline

            model = str(build_tiny_pipeline(Path(tmp) / "tiny-sd"))
        sides = {"grpc": Grpc(model, args.threads), "inprocess": InProcess(model, args.threads)}
        try:
            print(f"model {model}, {args.steps} steps, {args.threads} threads, median of {args.runs}")
            print(f"{'size':>9} {'grpc s':>8} {'in-proc s':>10} {'overhead':>9}")
            for size in (int(s) for s in args.sizes.split(",")):
                times: dict[str, list[float]] = {name: [] for name in sides}
                for name, side in sides.items():  # warm-up
                    side.run(size, args.steps, 0, os.path.join(tmp, f"warm-{name}.png"))
                for i in range(args.runs):
                    for name, side in sides.items():
                        times[name].append(side.run(size, args.steps, i + 1, os.path.join(tmp, f"{name}.png")))
                g, p = (statistics.median(times[n]) for n in ("grpc", "inprocess"))
                print(f"{size:>4}x{size:<4} {g:>8.3f} {p:>10.3f} {(g - p) * 1000:>+7.1f}ms", flush=True)
        finally:
            sides["grpc"].close()


if __name__ == "__main__":
    main()
