"""A deterministic echo backend for tests and as a minimal example for backend authors.

Run: ``python -m localai.testing.echo_backend --addr 127.0.0.1:PORT``.

Knobs (``options:`` of the model, sent as ``ModelOptions.Options`` ``"key:value"`` strings):
``load_log:PATH`` (append ``"<pid> <Model>"`` per LoadModel call), ``load_delay:S``,
``token_delay:S`` (between streamed words), ``dim:N`` (embedding size, default 8),
``free_log:PATH`` (append ``"<pid> free"`` per Free call), ``request_log:PATH`` (append
``"<pid> predict"`` per Predict/PredictStream call, to see which process served a request). With a
``ContextSize`` (the model's ``context_size``), words stand for tokens: a prompt of more words is
INVALID_ARGUMENT in llama.cpp's words, and the reply is cut to the words left. A Model/ModelFile containing
``fail-load`` is refused. Env ``ECHO_HEALTH_DELAY=S`` delays serving at start.
Input triggers: ``CRASH_NOW`` (exit 3 before replying), ``CRASH_MIDSTREAM`` (exit 3 after two
streamed words), ``SIGILL_NOW`` (dies of SIGILL, as native code built for another CPU does),
``ERROR_NOW`` (gRPC INTERNAL).

Media, for testing the kernel's routes: GenerateImage writes a solid-colour PNG of the asked
size (colour from the seed); TTS writes 16 kHz mono WAV silence, 0.05 s per character divided
by ``params["speed"]``; AudioTranscription answers "echo transcript of N bytes" in two segments
(a file starting with ``NOTAUDIO`` is INVALID_ARGUMENT); Rerank scores by shared words.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import struct
import sys
import threading
import time
import zlib

import grpc

from localai.backend_server import check_identity, serve
from localai.proto import backend_pb2 as pb
from localai.proto import backend_pb2_grpc


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _input_text(request) -> str:
    """The text the model would see: the prompt, or the chat messages as ``role: content`` lines."""
    if request.UseTokenizerTemplate:
        return "\n".join(f"{m.role}: {m.content}" for m in request.Messages)
    return request.Prompt


def _echo_source(request) -> str:
    """What gets echoed: the last user message (chat) or the prompt."""
    if request.UseTokenizerTemplate:
        for m in reversed(request.Messages):
            if m.role == "user":
                return m.content
        return request.Messages[-1].content if request.Messages else ""
    return request.Prompt


def _embed(seed: bytes, dim: int) -> list[float]:
    """Unit-norm vector derived from sha256(seed) in counter mode."""
    values = []
    for i in range(dim):
        (n,) = struct.unpack(">Q", hashlib.sha256(seed + i.to_bytes(4, "big")).digest()[:8])
        values.append(n / 2**63 - 1.0)
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


class EchoBackend(backend_pb2_grpc.BackendServicer):
    """Servicer that echoes prompts; every reply is a pure function of the request and options."""

    def __init__(self) -> None:
        self.model = ""
        self.options: dict[str, str] = {}
        self.context = 0
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------
    def Health(self, request, context):
        return pb.Reply(message=b"OK")

    def LoadModel(self, request, context):
        opts = dict(o.split(":", 1) if ":" in o else (o, "") for o in request.Options)
        if "load_delay" in opts:
            time.sleep(float(opts["load_delay"]))
        if "load_log" in opts:
            _append(opts["load_log"], f"{os.getpid()} {request.Model}")
        name = request.ModelFile or request.Model
        if "fail-load" in request.ModelFile or "fail-load" in request.Model:
            return pb.Result(success=False, message=f"echo: refusing to load {name}")
        with self._lock:
            self.model, self.options, self.context = request.Model, opts, request.ContextSize
        return pb.Result(success=True, message="loaded")

    def Free(self, request, context):
        if "free_log" in self.options:
            _append(self.options["free_log"], f"{os.getpid()} free")
        return pb.Result(success=True, message="freed")

    def Status(self, request, context):
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return pb.StatusResponse(
            state=pb.StatusResponse.READY, memory=pb.MemoryUsageData(total=rss, breakdown={"rss": rss})
        )

    # -- text ------------------------------------------------------------------------------------
    def _prepare(self, request, context) -> tuple[list[str], int]:
        """Check identity and triggers; return (reply words, prompt word count)."""
        check_identity(request.ModelIdentity, self.model, context)
        if "request_log" in self.options:
            _append(self.options["request_log"], f"{os.getpid()} predict")
        text = _input_text(request)
        if "CRASH_NOW" in text:
            os._exit(3)
        if "SIGILL_NOW" in text:  # as native code built for another CPU dies
            os.kill(os.getpid(), signal.SIGILL)
        if "ERROR_NOW" in text:
            context.abort(grpc.StatusCode.INTERNAL, "echo: requested error")
        reply = "echo: " + _echo_source(request)
        for stop in request.StopPrompts:
            if stop and stop in reply:
                reply = reply[: reply.index(stop)]
        words = reply.split()
        prompt_tokens = len(text.split())
        if self.context and prompt_tokens > self.context:  # as llama.cpp's server answers
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request ({prompt_tokens} tokens) exceeds the available "
                          f"context size ({self.context} tokens), try increasing it")
        if request.Tokens > 0:
            words = words[: request.Tokens]
        if self.context:
            words = words[: self.context - prompt_tokens]
        return words, prompt_tokens

    def Predict(self, request, context):
        words, prompt_tokens = self._prepare(request, context)
        return pb.Reply(message=" ".join(words).encode(), tokens=len(words), prompt_tokens=prompt_tokens)

    def PredictStream(self, request, context):
        words, prompt_tokens = self._prepare(request, context)
        crash = "CRASH_MIDSTREAM" in _input_text(request)
        delay = float(self.options.get("token_delay", 0) or 0)
        for i, word in enumerate(words):
            if crash and i == 2:
                time.sleep(0.2)  # let the two words reach the client first
                os._exit(3)
            if i and delay:
                time.sleep(delay)
            yield pb.Reply(message=(word if i == len(words) - 1 else word + " ").encode())
        if crash:
            time.sleep(0.2)
            os._exit(3)
        yield pb.Reply(message=b"", tokens=len(words), prompt_tokens=prompt_tokens)

    def Embedding(self, request, context):
        check_identity(request.ModelIdentity, self.model, context)
        dim = int(self.options.get("dim", 8) or 8)
        if request.EmbeddingTokens:
            seed, count = " ".join(map(str, request.EmbeddingTokens)).encode(), len(request.EmbeddingTokens)
        else:
            seed, count = request.Prompt.encode(), len(request.Prompt.split())
        return pb.EmbeddingResult(
            embeddings=_embed(seed, dim), tokens=1, dim=dim, prompt_tokens=count,
            layout=pb.EMBEDDING_LAYOUT_FINAL,
        )

    def TokenizeString(self, request, context):
        check_identity(request.ModelIdentity, self.model, context)
        tokens = [zlib.crc32(w.encode()) % 50000 for w in _input_text(request).split()]
        return pb.TokenizationResponse(length=len(tokens), tokens=tokens)


    def GenerateImage(self, request, context):
        if request.width <= 0 or request.height <= 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "echo: width and height must be positive")
        colour = bytes(hashlib.sha256(str(request.seed).encode()).digest()[:3])
        _write_png(request.dst, request.width, request.height, colour)
        return pb.Result(success=True, message=f"echo image {request.width}x{request.height}")

    def TTS(self, request, context):
        if not request.text.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "echo: empty text")
        speed = float(request.params.get("speed", "1") or 1)
        frames = int(16000 * 0.05 * len(request.text) / speed)
        import wave

        with wave.open(request.dst, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(16000)
            out.writeframes(b"\x00\x00" * frames)
        return pb.Result(success=True, message=f"{frames} frames")

    def AudioTranscription(self, request, context):
        with open(request.dst, "rb") as audio:
            data = audio.read()
        if data.startswith(b"NOTAUDIO"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "echo: cannot decode audio")
        second = 1_000_000_000
        words = [pb.TranscriptWord(start=0, end=second // 2, text="echo")]
        segments = [
            pb.TranscriptSegment(id=0, start=0, end=int(1.5 * second), text=" echo transcript", words=words),
            pb.TranscriptSegment(id=1, start=int(1.5 * second), end=3 * second, text=f" of {len(data)} bytes"),
        ]
        return pb.TranscriptResult(segments=segments, text=f"echo transcript of {len(data)} bytes",
                                   language=request.language or "en", duration=3.0)

    def Rerank(self, request, context):
        query = set(request.query.lower().split())
        scored = [pb.DocumentResult(index=i, text=doc, relevance_score=len(query & set(doc.lower().split())) /
                                    (len(query) or 1)) for i, doc in enumerate(request.documents)]
        scored.sort(key=lambda r: r.relevance_score, reverse=True)
        if request.top_n:
            scored = scored[: request.top_n]
        words = len(request.query.split()) + sum(len(d.split()) for d in request.documents)
        return pb.RerankResult(results=scored, usage=pb.Usage(total_tokens=words, prompt_tokens=words))


def _write_png(path: str, width: int, height: int, rgb: bytes) -> None:
    """A solid-colour RGB PNG, written with zlib alone."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + rgb * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) +
                  chunk(b"IEND", b""))


def main(argv=None) -> None:
    """Entry point: optional start-up delay, then serve the echo backend."""
    delay = float(os.environ.get("ECHO_HEALTH_DELAY", "0") or 0)
    if delay > 0:
        time.sleep(delay)
    serve(EchoBackend(), argv if argv is not None else sys.argv[1:], prog="echo-backend")


if __name__ == "__main__":
    main()
