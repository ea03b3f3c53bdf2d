"""gRPC servicer of the faster-whisper backend.

Every faster_whisper call, its import included, runs on one dedicated worker thread, so
requests are served one at a time (FIFO) while Health and Status stay responsive.

``ModelOptions``: ``ModelFile`` (else ``Model``, joined to ``ModelPath`` when relative) is
a CTranslate2 Whisper model directory or a faster-whisper size name; ``CUDA`` selects the
GPU when CTranslate2 sees one (else the CPU); ``Threads`` sets the CPU threads (fixed for the life of the model). ``Options``
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
from typing import Any, Callable

from localai.backend_server import (BadRequest, NotLoaded, abort_for, check_identity, parse_options,
                                    status_response, truthy)
from localai.backend_worker import Worker
from localai.proto import backend_pb2, backend_pb2_grpc

NS = 1_000_000_000


def _ns(seconds: float) -> int:
    return int(round(float(seconds) * NS))


def model_path(req: Any) -> str:
    """The model directory (or size name) a LoadModel request names."""
    path = req.ModelFile or req.Model
    if path and not req.ModelFile and req.ModelPath and not os.path.isabs(path):
        joined = os.path.join(req.ModelPath, path)
        if os.path.exists(joined):
            path = joined
    return path



def _cuda_devices() -> int:
    """CUDA devices CTranslate2 can use (0 without a GPU or a CUDA build): ``CUDA`` means "when present"."""
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count()
    except Exception:  # noqa: BLE001 - no CUDA runtime at all
        return 0

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
        device = opts.get("device") or ("cuda" if req.CUDA and _cuda_devices() else "cpu")
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
            self.vad_filter = truthy(opts.get("vad_filter"))
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
        self.worker = Worker("whisper-worker")
        self.engine = Engine()
        self.model = ""

    def Health(self, request, context):
        return backend_pb2.Reply(message=b"OK")

    def LoadModel(self, request, context):
        try:
            result = self.worker.run(self.engine.load, request)
        except Exception as exc:  # noqa: BLE001
            result = backend_pb2.Result(success=False, message=f"failed to load model: {exc}")
        self.model = (request.Model or request.ModelFile) if result.success else ""
        return result

    def AudioTranscription(self, request, context):
        if self.model:
            check_identity(request.ModelIdentity, self.model, context)
        try:
            return self.worker.run(self.engine.transcribe, request, context.is_active)
        except Exception as exc:  # noqa: BLE001
            abort_for(exc, context, "faster-whisper")

    def Status(self, request, context):
        return status_response(self.engine.model is not None, self.worker.busy)

    def Free(self, request, context):
        result = self.worker.run(self.engine.free)
        self.model = ""
        return result
