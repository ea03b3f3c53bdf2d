#!/usr/bin/env python3
"""Template LocalAI backend: a gRPC ``backend.Backend`` server around a trivial model.

The "model" is a word-level bigram Markov chain trained at LoadModel from a text file. Replace
``BigramModel`` (and the RPCs you need) with your real model; keep the server scaffolding.

Run: ``./run.sh --addr 127.0.0.1:50051`` (LocalAI appends ``--addr``). Self-contained: it needs
only grpcio, protobuf and the generated ``backend_pb2*.py`` next to it (see ``protogen.sh``).
"""

from __future__ import annotations

import argparse
import hmac
import os
import random
import signal
import string
import sys
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the generated stubs live next to this file
import backend_pb2  # noqa: E402
import backend_pb2_grpc  # noqa: E402

MAX_MESSAGE_BYTES = 50 * 1024 * 1024
DEFAULT_TOKENS = 32
BUILTIN_TEXT = (
    "LocalAI runs models on your own machine. Each model runs in a backend process that speaks gRPC. "
    "The server starts the backend, checks its health, loads the model and sends it prompts. "
    "A backend answers with text, one word at a time when it streams. "
    "Your backend can wrap any model you like, as long as it answers the contract. "
    "This template trains a tiny chain of words so that it can answer without any model file."
)


def _version() -> str:
    try:
        with open(os.path.join(HERE, "VERSION"), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


VERSION = _version()


def _key(word: str) -> str:
    """Normalised form used to look words up (case and surrounding punctuation ignored)."""
    return word.lower().strip(string.punctuation)


class BigramModel:
    """Word-level bigram Markov chain; generation is a pure function of (prompt, seed, limits)."""

    def __init__(self, text: str):
        self.words = text.split() or BUILTIN_TEXT.split()
        self.next: dict[str, list[str]] = defaultdict(list)
        # the chain wraps around (last word -> first word), so every word has a successor
        for cur, nxt in zip(self.words, self.words[1:] + self.words[:1]):
            self.next[_key(cur)].append(nxt)

    def start_word(self, text: str, rng: random.Random) -> str:
        """The last word of ``text`` that the chain knows, else a random word of the corpus."""
        for word in reversed(text.split()):
            if _key(word) in self.next:
                return word
        return rng.choice(self.words)

    def generate(self, text: str, seed: int | None, max_words: int, temperature: float = 1.0) -> list[str]:
        """Up to ``max_words`` words continuing ``text``; greedy when ``temperature`` is 0."""
        rng = random.Random(seed)
        word, out = self.start_word(text, rng), []
        for _ in range(max_words):
            choices = self.next[_key(word)]
            word = max(set(choices), key=lambda w: (choices.count(w), w)) if temperature == 0 else rng.choice(choices)
            out.append(word)
        return out


def _input_text(request) -> str:
    """Prompt for completions; for chat (tokenizer template) the last user message."""
    if request.UseTokenizerTemplate and request.Messages:
        users = [m.content for m in request.Messages if m.role == "user"]
        return users[-1] if users else request.Messages[-1].content
    return request.Prompt


def _prompt_tokens(request) -> int:
    if request.UseTokenizerTemplate:
        return sum(len(m.content.split()) for m in request.Messages)
    return len(request.Prompt.split())


class BackendServicer(backend_pb2_grpc.BackendServicer):
    """Implements Health, LoadModel, Predict, PredictStream, Status and Free.

    Every other RPC is inherited from the generated base class, which answers UNIMPLEMENTED.
    """

    def __init__(self):
        self.model: BigramModel | None = None
        self.name = ""
        self.seed = 0
        self.lock = threading.Lock()

    def Health(self, request, context):
        return backend_pb2.Reply(message=b"OK")

    def LoadModel(self, request, context):
        path = request.ModelFile
        if not (path and os.path.isfile(path)) and request.Model:
            path = os.path.join(request.ModelPath, request.Model)
        try:
            if path and os.path.isfile(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    text, source = f.read(), path
            else:
                text, source = BUILTIN_TEXT, "the built-in paragraph"
            model = BigramModel(text)
        except Exception as exc:  # report load errors instead of crashing the process
            return backend_pb2.Result(success=False, message=f"template-backend {VERSION}: {exc}")
        with self.lock:
            self.model, self.name = model, request.Model
            self.seed = request.Seed
        return backend_pb2.Result(
            success=True,
            message=f"template-backend {VERSION}: trained on {source} ({len(model.words)} words)",
        )

    def Free(self, request, context):
        with self.lock:
            self.model = None
        return backend_pb2.Result(success=True, message="freed")

    def Status(self, request, context):
        state = backend_pb2.StatusResponse.READY if self.model else backend_pb2.StatusResponse.UNINITIALIZED
        rss = 0
        try:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
        return backend_pb2.StatusResponse(
            state=state, memory=backend_pb2.MemoryUsageData(total=rss, breakdown={"rss": rss})
        )

    def _generate(self, request, context) -> list[str]:
        """Checks (model loaded, ModelIdentity), then the reply words after max-tokens and stops."""
        model = self.model
        if model is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no model loaded: call LoadModel first")
        if request.ModelIdentity and request.ModelIdentity != self.name:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"model identity mismatch: request for {request.ModelIdentity!r}, loaded {self.name!r}")
        seed = request.Seed or self.seed  # 0 = unset; a negative seed means random
        seed = None if seed is not None and seed < 0 else seed
        words = model.generate(_input_text(request), seed, request.Tokens if request.Tokens > 0 else DEFAULT_TOKENS,
                               request.Temperature)
        text = " ".join(words)
        for stop in request.StopPrompts:
            if stop and stop in text:
                text = text[: text.index(stop)]
        return text.split()

    def Predict(self, request, context):
        words = self._generate(request, context)
        return backend_pb2.Reply(message=" ".join(words).encode(), tokens=len(words),
                                 prompt_tokens=_prompt_tokens(request))

    def PredictStream(self, request, context):
        words = self._generate(request, context)
        for i, word in enumerate(words):
            yield backend_pb2.Reply(message=(word if i == 0 else " " + word).encode())
        yield backend_pb2.Reply(message=b"", tokens=len(words), prompt_tokens=_prompt_tokens(request))


class BearerAuth(grpc.ServerInterceptor):
    """When LOCALAI_GRPC_AUTH_TOKEN is set, calls must carry ``authorization: Bearer <token>``."""

    def __init__(self, token: str):
        self.expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        got = str(dict(details.invocation_metadata or ()).get("authorization", "")).encode()
        if handler is None or hmac.compare_digest(got, self.expected):
            return handler

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid or missing bearer token")

        if handler.request_streaming and handler.response_streaming:
            make = grpc.stream_stream_rpc_method_handler
        elif handler.request_streaming:
            make = grpc.stream_unary_rpc_method_handler
        elif handler.response_streaming:
            make = grpc.unary_stream_rpc_method_handler
        else:
            make = grpc.unary_unary_rpc_method_handler
        return make(deny, handler.request_deserializer, handler.response_serializer)


def serve(addr: str) -> None:
    """Serve on ``addr`` until SIGTERM/SIGINT."""
    token = os.environ.get("LOCALAI_GRPC_AUTH_TOKEN", "")
    server = grpc.server(
        ThreadPoolExecutor(max_workers=int(os.environ.get("PYTHON_GRPC_MAX_WORKERS", "4"))),
        options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
        interceptors=[BearerAuth(token)] if token else [],
    )
    backend_pb2_grpc.add_BackendServicer_to_server(BackendServicer(), server)
    if not server.add_insecure_port(addr):
        sys.exit(f"template-backend: cannot listen on {addr}")
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"template-backend {VERSION} listening on {addr}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(grace=2).wait()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Template LocalAI gRPC backend")
    parser.add_argument("--addr", default="localhost:50051", help="HOST:PORT to listen on")
    args, _unknown = parser.parse_known_args(argv)
    serve(args.addr)


if __name__ == "__main__":
    main()
