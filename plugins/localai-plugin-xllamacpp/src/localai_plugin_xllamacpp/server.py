"""gRPC servicer of the xllamacpp ``llama-cpp`` backend: llama.cpp's own server engine.

``xllamacpp.Server`` runs llama.cpp's server loop on its own thread with ``parallel`` slots:
requests that arrive together are decoded together in one batch (continuous batching), so
four users no longer wait in line. gRPC handler threads only hand requests to it: a
non-streamed call blocks its handler thread until the reply is ready; a streamed call runs
the engine call on a helper thread whose per-chunk callback puts each piece of text on a
queue that the handler drains into ``Reply`` messages. Returning True from the callback
cancels the request in the engine (the client went away).

``ModelOptions`` used: ContextSize (per slot), Threads, NBatch, NGPULayers, MainGPU,
TensorSplit, FlashAttention, CacheTypeKey/Value, NoKVOffload, Embeddings, Seed,
RopeFreqBase/Scale. ``Options`` entries (``"key:value"``):

- ``parallel:N``: number of slots decoded together (default 4; the kernel sends the model
  config's ``parallel``); the context is ``ContextSize × N`` so every slot gets ContextSize
- ``n_ubatch:N``: physical batch size; ``kv_unified:true``: one KV buffer shared by all slots
- ``cache_prompt:false``: do not reuse a slot's cached prompt prefix
- ``cache_reuse:N``: reuse cached chunks of at least N tokens after a change mid-prompt (default 256)

Prompt KV survives unloads: see :mod:`localai_plugin_xllamacpp.kv_cache` (the kernel's
``--kv-cache-dir`` / ``--kv-cache-size`` reach it as ``LOCALAI_KV_CACHE_DIR`` / ``_SIZE``).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from localai.backend_server import (BadRequest, NotLoaded, abort_for, check_identity, model_file,
                                    parse_options, status_response, truthy)
from localai.backend_chat import StreamShaper, finish_reply
from localai.backend_worker import Failure
from localai.proto import backend_pb2, backend_pb2_grpc

from .kv_cache import SlotCache, open_store
from .request_body import prepare

DEFAULT_PARALLEL = 4
DEFAULT_CONTEXT = 2048
DEFAULT_CACHE_REUSE = 256  # LocalAI's default: reuse cached chunks of at least this many tokens
GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "bf16": 30}
FLASH_ATTN = {"auto": -1, "off": 0, "false": 0, "on": 1, "true": 1}

xl: Any = None  # xllamacpp, imported by LoadModel


class EngineError(Exception):
    """llama.cpp answered a request with an error object; 4xx codes are the caller's fault."""

    def __init__(self, error: dict[str, Any]):
        super().__init__(error.get("message") or "llama.cpp error")
        self.code = error.get("code") or 500


def _checked(result: Any) -> dict[str, Any]:
    """The engine's answer, raising its error object as an exception."""
    if isinstance(result, dict) and isinstance(result.get("error"), dict):
        raise EngineError(result["error"])
    if not isinstance(result, dict):
        raise EngineError({"message": f"unexpected answer from llama.cpp: {result!r}"})
    return result


def _reply(usage: dict[str, Any] | None, timings: dict[str, Any] | None, message: bytes = b"") -> Any:
    usage, timings = usage or {}, timings or {}
    return backend_pb2.Reply(
        message=message,
        tokens=int(usage.get("completion_tokens") or timings.get("predicted_n") or 0),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        prompt_tokens_cached=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
        timing_prompt_processing=float(timings.get("prompt_ms") or 0.0),
        timing_token_generation=float(timings.get("predicted_ms") or 0.0),
    )


class Engine:
    """One ``xllamacpp.Server`` (the loaded model) and the calls made on it."""

    def __init__(self) -> None:
        self.server: Any = None
        self.embedder: Any = None
        self.params: Any = None
        self.parallel = 0
        self.embeddings = False
        self.kv: SlotCache | None = None  # prompt KV kept on disk across unloads
        self.lock = threading.Lock()  # load/free only; requests run concurrently
        self.embed_lock = threading.Lock()

    def load(self, req: Any) -> Any:
        global xl
        path = model_file(req)
        if not path:
            return backend_pb2.Result(success=False, message="no model file given (ModelFile or Model)")
        if not os.path.isfile(path):
            return backend_pb2.Result(success=False, message=f"model file not found: {path}")
        if xl is None:
            import xllamacpp

            xl = xllamacpp
        opts = parse_options(req.Options)
        try:
            params = self._params(req, path, opts)
        except (ValueError, KeyError) as exc:
            return backend_pb2.Result(success=False, message=f"bad model options: {exc}")
        with self.lock:
            self.free()
            cache = open_store(path, params, req)
            try:
                self.server = xl.Server(params)
            except Exception as exc:  # noqa: BLE001 - reported to the caller
                return backend_pb2.Result(success=False, message=f"failed to load {path}: {exc}")
            self.kv = SlotCache(*cache, self.server.listening_address) if cache else None
            self.params = params
            self.parallel = params.n_parallel
            self.embeddings = bool(req.Embeddings)
        return backend_pb2.Result(success=True, message=f"Model loaded ({self.parallel} parallel slots)")

    @staticmethod
    def _params(req: Any, path: str, opts: dict[str, str]) -> Any:
        p = xl.CommonParams()
        p.model.path = path
        p.verbosity = int(os.environ.get("LOCALAI_LLAMA_VERBOSITY", "-1"))
        parallel = max(1, int(opts.get("parallel", DEFAULT_PARALLEL)))
        p.n_parallel = parallel
        p.kv_unified = truthy(opts.get("kv_unified"))
        context = req.ContextSize or DEFAULT_CONTEXT
        p.n_ctx = context if p.kv_unified else context * parallel
        threads = req.Threads or os.cpu_count() or 1
        p.cpuparams.n_threads = threads
        p.cpuparams_batch.n_threads = threads
        if req.NBatch:
            p.n_batch = req.NBatch
        if "n_ubatch" in opts:
            p.n_ubatch = int(opts["n_ubatch"])
        p.n_gpu_layers = req.NGPULayers  # the kernel sends "all" unless gpu_layers is set; CPU builds ignore it
        if req.MainGPU:
            p.main_gpu = int(req.MainGPU)
        if req.TensorSplit:
            split = [float(x) for x in req.TensorSplit.replace(";", ",").split(",") if x.strip()]
            p.tensor_split = split + [0.0] * (len(p.tensor_split) - len(split))
        if req.FlashAttention:
            p.flash_attn_type = xl.llama_flash_attn_type(FLASH_ATTN[req.FlashAttention.strip().lower()])
        if req.CacheTypeKey:
            p.cache_type_k = xl.ggml_type(GGML_TYPES[req.CacheTypeKey.lower()])
        if req.CacheTypeValue:
            p.cache_type_v = xl.ggml_type(GGML_TYPES[req.CacheTypeValue.lower()])
        if req.NoKVOffload:
            p.no_kv_offload = True
        if req.RopeFreqBase:
            p.rope_freq_base = req.RopeFreqBase
        if req.RopeFreqScale:
            p.rope_freq_scale = req.RopeFreqScale
        if req.Seed:
            p.sampling.seed = req.Seed & 0xFFFFFFFF
        if "cache_prompt" in opts:
            p.cache_prompt = truthy(opts["cache_prompt"])
        p.n_cache_reuse = int(opts.get("cache_reuse", DEFAULT_CACHE_REUSE))  # reuse chunks after an edit
        return p

    def free(self) -> Any:
        if self.kv is not None and self.server is not None:
            self.kv.save_all()  # an unload, not a crash: keep the prompts' KV for the next load
        self.kv = None
        self.server = self.embedder = self.params = None  # destructors stop the loops, free memory
        self.parallel = 0
        return backend_pb2.Result(success=True, message="model freed")

    def require(self) -> Any:
        server = self.server
        if server is None:
            raise NotLoaded("model not loaded")
        return server

    # -- generation --------------------------------------------------------------------

    def predict(self, req: Any) -> Any:
        chat, body, prepared = prepare(req)
        server = self.require()
        kv = self.kv
        if kv is not None:
            kv.prepare(body, chat)
        result = _checked(server.handle_chat_completions(body) if chat else server.handle_completions(body))
        if kv is not None:
            kv.after_request(result.get("usage"))
        choice = result["choices"][0]
        text = (choice.get("message") or {}).get("content") if chat else choice.get("text")
        reply = _reply(result.get("usage"), result.get("timings"), (text or "").encode())
        if req.Logprobs and choice.get("logprobs"):
            reply.logprobs = json.dumps(choice["logprobs"]).encode()
        return finish_reply(prepared, text or "", reply)

    def stream(self, req: Any, out: Callable[[Any], None], cancelled: threading.Event) -> None:
        """Run one streamed request; each text piece (bytes) or Reply, then the final Reply, go to ``out``."""
        chat, body, prepared = prepare(req)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        server = self.require()
        kv = self.kv
        if kv is not None:
            kv.prepare(body, chat)
        final: list[Any] = []
        usage: list[dict[str, Any]] = []
        shaper = StreamShaper(prepared) if prepared.mode or req.Logprobs else None

        def on_chunk(chunk: dict[str, Any]) -> bool:
            choices = chunk.get("choices")
            if choices:
                piece = choices[0]["delta"].get("content") if chat else choices[0].get("text")
                if piece:
                    if shaper is None:
                        out(piece.encode())
                    else:
                        logprobs = choices[0].get("logprobs")
                        for reply in shaper.feed(piece, json.dumps(logprobs).encode() if logprobs else b""):
                            out(reply)
            if chunk.get("usage"):
                final.append(_reply(chunk["usage"], chunk.get("timings")))
                usage.append(chunk["usage"])
            elif "error" in chunk:
                final.append(EngineError(chunk["error"]))
            return cancelled.is_set()

        handle = server.handle_chat_completions if chat else server.handle_completions
        result = handle(body, on_chunk)
        if result is not None:
            _checked(result)
        if final and isinstance(final[-1], EngineError):
            raise final[-1]
        for reply in shaper.finish() if shaper is not None else ():
            out(reply)
        out(final[-1] if final else backend_pb2.Reply())
        if kv is not None and usage:
            kv.after_request(usage[-1])

    # -- embeddings and tokens ---------------------------------------------------------

    def _embedder(self) -> Any:
        """A second, one-slot engine with mean pooling, made on first use.

        Embeddings get their own engine, one request at a time: llama.cpp pools wrongly when
        several sequences share a batch (measured: vectors off by up to 0.43), and the chat
        engine's slots batch whatever arrives together. The weights are mmap-ed, so shared.
        """
        if self.embedder is None:
            p = self._params_like(self.params)
            p.n_parallel = 1
            p.n_ctx = self.params.n_ctx // max(1, self.params.n_parallel)
            p.n_batch = p.n_ubatch = p.n_ctx
            p.embedding = True
            p.pooling_type = xl.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
            self.embedder = xl.Server(p)
        return self.embedder

    @staticmethod
    def _params_like(params: Any) -> Any:
        p = xl.CommonParams()
        p.model.path = params.model.path
        p.verbosity = params.verbosity
        p.cpuparams.n_threads = params.cpuparams.n_threads
        p.cpuparams_batch.n_threads = params.cpuparams_batch.n_threads
        p.n_gpu_layers = params.n_gpu_layers
        p.main_gpu = params.main_gpu
        p.tensor_split = params.tensor_split
        return p

    def embed(self, req: Any) -> Any:
        self.require()
        if not self.embeddings:
            raise BadRequest("this model was loaded without embeddings (set embeddings: true in its config)")
        item: Any = list(req.EmbeddingTokens) if req.EmbeddingTokens else req.Prompt
        if not item:
            raise BadRequest("nothing to embed: empty prompt")
        with self.embed_lock:
            result = _checked(self._embedder().handle_embeddings({"input": item}))
        vec = result["data"][0]["embedding"]
        usage = result.get("usage") or {}
        return backend_pb2.EmbeddingResult(
            embeddings=vec,
            dim=len(vec),
            tokens=1,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            layout=backend_pb2.EMBEDDING_LAYOUT_FINAL,
        )

    def tokenize(self, req: Any) -> Any:
        """TokenizeString through the engine's own loopback HTTP endpoint (special tokens parsed)."""
        server = self.require()
        data = json.dumps({"content": req.Prompt, "parse_special": True}).encode()
        request = urllib.request.Request(server.listening_address + "/tokenize", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            tokens = json.loads(answer.read())["tokens"]
        return backend_pb2.TokenizationResponse(length=len(tokens), tokens=tokens)


def _abort(exc: Exception, context: Any) -> None:
    """Abort the call: llama.cpp's 4xx errors and malformed input are INVALID_ARGUMENT."""
    if isinstance(exc, EngineError) and 400 <= int(exc.code) < 500 or isinstance(exc, (ValueError, TypeError)):
        exc = BadRequest(str(exc))
    abort_for(exc, context, "llama-cpp")


class XLlamaServicer(backend_pb2_grpc.BackendServicer):
    """The Backend service: requests go straight to the engine, which batches them."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.model = ""
        self.active = 0
        self.counter = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="llama-stream")

    def _check(self, request: Any, context: Any) -> None:
        if self.model:
            check_identity(request.ModelIdentity, self.model, context)

    def _busy(self, delta: int) -> None:
        with self.counter:
            self.active += delta

    def _call(self, context: Any, fn: Callable[..., Any], *args: Any) -> Any:
        self._busy(1)
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001
            _abort(exc, context)
        finally:
            self._busy(-1)

    def Health(self, request, context):
        return backend_pb2.Reply(message=b"OK")

    def LoadModel(self, request, context):
        result = self.engine.load(request)
        if result.success:
            self.model = request.Model or request.ModelFile
        return result

    def Predict(self, request, context):
        self._check(request, context)
        return self._call(context, self.engine.predict, request)

    def PredictStream(self, request, context):
        self._check(request, context)
        out: queue.SimpleQueue = queue.SimpleQueue()
        cancelled = threading.Event()
        context.add_callback(cancelled.set)

        def run() -> None:
            try:
                self.engine.stream(request, out.put, cancelled)
            except Exception as exc:  # noqa: BLE001 - relayed to the handler
                out.put(Failure(exc))

        self._busy(1)
        self.pool.submit(run)
        Reply = backend_pb2.Reply
        try:
            while True:
                item = out.get()
                if type(item) is bytes:
                    yield Reply(message=item)
                elif type(item) is Failure:
                    _abort(item.exc, context)
                elif item.message or item.chat_deltas:  # a shaped piece (tool calls, logprobs)
                    yield item
                else:
                    yield item
                    return
        finally:
            cancelled.set()
            self._busy(-1)

    def Embedding(self, request, context):
        self._check(request, context)
        return self._call(context, self.engine.embed, request)

    def TokenizeString(self, request, context):
        self._check(request, context)
        return self._call(context, self.engine.tokenize, request)

    def Status(self, request, context):
        return status_response(self.engine.server is not None, self.active > 0)

    def Free(self, request, context):
        with self.engine.lock:
            result = self.engine.free()
        self.model = ""
        return result
