"""gRPC servicer of the faster-whisper backend.

Every faster_whisper call, its import included, runs on one dedicated worker thread, so
requests are served one at a time (FIFO) while Health and Status stay responsive.

``ModelOptions``: ``ModelFile`` (else ``Model``, joined to ``ModelPath`` when relative) is
a CTranslate2 Whisper model directory or a faster-whisper size name; ``CUDA`` selects the
GPU; ``Threads`` sets the CPU threads (fixed for the life of the model). ``Options``
entries (``"key:value"``):

- ``device:cpu|cuda|auto``: overrides ``CUDA``
- ``compute_type:TYPE``: CTranslate2 compute type (default ``int8`` on CPU, ``float16`` on CUDA)
- ``beam_size:N``: beam size (default 5)
- ``vad_filter:true``: drop silence with the bundled Silero VAD first

Segment and word times are sent as int64 nanoseconds (LocalAI's core reads them as
``time.Duration``).
"""

from __future__ import annotations

import gc
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import grpc

from localai.backend_server import check_identity
from localai.proto import backend_pb2, backend_pb2_grpc

NS = 1_000_000_000


class NotLoaded(Exception):
    """A transcription arrived before LoadModel succeeded."""


class BadRequest(Exception):
    """The request cannot be served as asked (undecodable audio, bad language...)."""


def parse_options(options: Any) -> dict[str, str]:
    """``["key:value", "flag"]`` → ``{"key": "value", "flag": "true"}``."""
    parsed: dict[str, str] = {}
    for opt in options:
        key, sep, value = opt.partition(":")
        parsed[key.strip()] = value.strip() if sep else "true"
    return parsed


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on", "enabled")


def _ns(seconds: float) -> int:
    return int(round(float(seconds) * NS))


def _rss() -> int:
    """Resident set size of this process in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def model_path(req: Any) -> str:
    """The model directory (or size name) a LoadModel request names."""
    path = req.ModelFile or req.Model
    if path and not req.ModelFile and req.ModelPath and not os.path.isabs(path):
        joined = os.path.join(req.ModelPath, path)
        if os.path.exists(joined):
            path = joined
    return path


class Engine:
    """The faster-whisper state. Every method runs on the worker thread only."""

    def __init__(self) -> None:
        self.model: Any = None
        self.beam_size = 5
        self.vad_filter = False

    def load(self, req: Any) -> Any:
        """LoadModel: build the WhisperModel."""
        path = model_path(req)
        if not path:
            return backend_pb2.Result(success=False, message="no model given (ModelFile or Model)")
        if (os.sep in path or path.startswith(".")) and not os.path.isdir(path):
            return backend_pb2.Result(success=False, message=f"model directory not found: {path}")
        opts = parse_options(req.Options)
        device = opts.get("device") or ("cuda" if req.CUDA else "cpu")
        compute = opts.get("compute_type") or ("int8" if device == "cpu" else "float16")
        self.free()
        try:
            from faster_whisper import WhisperModel

            self.model = WhisperModel(
                path,
                device=device,
                compute_type=compute,
                cpu_threads=req.Threads or os.cpu_count() or 1,
            )
            self.beam_size = int(opts.get("beam_size", 5))
            self.vad_filter = _truthy(opts.get("vad_filter"))
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            self.free()
            return backend_pb2.Result(success=False, message=f"failed to load {path}: {exc}")
        return backend_pb2.Result(
            success=True, message=f"Model loaded successfully ({device}, {compute})"
        )

    def free(self) -> Any:
        """Free: drop the model (CTranslate2 releases its memory)."""
        self.model = None
        gc.collect()
        return backend_pb2.Result(success=True, message="model freed")

    def transcribe(self, req: Any, active: Callable[[], bool]) -> Any:
        """AudioTranscription: decode ``req.dst`` and transcribe it to a TranscriptResult."""
        from faster_whisper.audio import decode_audio

        model = self.model
        if model is None:
            raise NotLoaded("model not loaded")
        if not req.dst:
            raise BadRequest("no audio file given (dst)")
        if not os.path.isfile(req.dst):
            raise BadRequest(f"audio file not found: {req.dst}")
        if req.translate and not model.model.is_multilingual:
            raise BadRequest("translation is not supported: the model is English-only")
        try:
            audio = decode_audio(req.dst, sampling_rate=model.feature_extractor.sampling_rate)
        except Exception as exc:  # noqa: BLE001 - PyAV raises many kinds
            raise BadRequest(f"cannot decode audio: {exc}") from exc
        language = req.language.strip().lower() or None
        if language and model.model.is_multilingual and language not in model.supported_languages:
            raise BadRequest(f"unsupported language {req.language!r}")
        kwargs: dict[str, Any] = dict(
            language=language,
            task="translate" if req.translate else "transcribe",
            beam_size=self.beam_size,
            vad_filter=self.vad_filter,
            word_timestamps="word" in req.timestamp_granularities,
        )
        if req.prompt:
            kwargs["initial_prompt"] = req.prompt
        if req.temperature > 0:
            kwargs["temperature"] = req.temperature
        segments, info = model.transcribe(audio, **kwargs)
        out = []
        for i, seg in enumerate(segments):  # lazy: decoding happens here
            if not active():
                break
            words = [
                backend_pb2.TranscriptWord(start=_ns(w.start), end=_ns(w.end), text=w.word.strip())
                for w in seg.words or ()
            ]
            out.append(
                backend_pb2.TranscriptSegment(
                    id=i, start=_ns(seg.start), end=_ns(seg.end), text=seg.text,
                    tokens=seg.tokens, words=words,
                )
            )
        return backend_pb2.TranscriptResult(
            segments=out,
            text="".join(s.text for s in out).strip(),
            language=info.language or "",
            duration=float(info.duration),
        )


class WhisperServicer(backend_pb2_grpc.BackendServicer):
    """The Backend service; handlers relay work to the single whisper worker thread."""

    def __init__(self) -> None:
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper-worker")
        self.engine = Engine()
        self.model = ""
        self.pending = 0
        self._lock = threading.Lock()

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            self.pending += 1
        try:
            return self.worker.submit(fn, *args).result()
        finally:
            with self._lock:
                self.pending -= 1

    def Health(self, request, context):
        return backend_pb2.Reply(message=b"OK")

    def LoadModel(self, request, context):
        try:
            result = self._run(self.engine.load, request)
        except Exception as exc:  # noqa: BLE001
            result = backend_pb2.Result(success=False, message=f"failed to load model: {exc}")
        self.model = (request.Model or request.ModelFile) if result.success else ""
        return result

    def AudioTranscription(self, request, context):
        if self.model:
            check_identity(request.ModelIdentity, self.model, context)
        try:
            return self._run(self.engine.transcribe, request, context.is_active)
        except NotLoaded:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "model not loaded")
        except BadRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:  # noqa: BLE001
            context.abort(grpc.StatusCode.INTERNAL, f"faster-whisper: {type(exc).__name__}: {exc}")

    def Status(self, request, context):
        if self.engine.model is None:
            state = backend_pb2.StatusResponse.UNINITIALIZED
        elif self.pending:
            state = backend_pb2.StatusResponse.BUSY
        else:
            state = backend_pb2.StatusResponse.READY
        return backend_pb2.StatusResponse(state=state, memory=backend_pb2.MemoryUsageData(total=_rss()))

    def Free(self, request, context):
        result = self._run(self.engine.free)
        self.model = ""
        return result
