"""gRPC servicer of the piper backend (piper-tts, ONNX voices).

TTS writes a 16-bit mono WAV to ``dst`` (through a temp file beside it, renamed at the end);
TTSStream sends a JSON format header, then raw int16 PCM, one Reply per sentence. Empty,
too long (``max_chars``) or unspeakable text (``...``) is INVALID_ARGUMENT. Model
calls are serialised by one lock, taken per synthesised sentence, so concurrent requests
interleave sentence by sentence and a slow stream reader never holds the voice.

``TTSRequest.params``: ``speed`` (0.25-4.0, 2.0 = twice as fast; 0 or empty = 1.0).
``TTSRequest.voice``: a speaker name or id of a multi-speaker voice; ignored by single-speaker
voices, and OpenAI's voice names (``alloy``...) mean the default speaker.

``ModelOptions.Options`` entries (``"key:value"``):

- ``max_chars:N``: longest accepted text (default 4096)
- ``config:PATH``: voice config (default: the model path + ``.json``)
- ``speaker:NAME|ID``: default speaker of a multi-speaker voice
- ``noise_scale:F``, ``noise_w_scale:F``, ``length_scale:F``: synthesis defaults
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import wave
from typing import Any, Iterator

import grpc

from localai.backend_server import BadRequest, check_identity, model_file, parse_options, status_response
from localai.proto import backend_pb2, backend_pb2_grpc

DEFAULT_MAX_CHARS = 4096
MIN_SPEED, MAX_SPEED = 0.25, 4.0
OPENAI_VOICES = frozenset(
    "alloy ash ballad coral echo fable nova onyx sage shimmer verse marin cedar".split()
)


def _load_voice(path: str, config: str, use_cuda: bool, threads: int) -> tuple[Any, str]:
    """A PiperVoice (and a note for the load Result); CUDA falls back to CPU when absent."""
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    note = ""
    if use_cuda and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        use_cuda, note = False, " (no CUDA in onnxruntime here: on the CPU)"
    if not threads:
        return PiperVoice.load(path, config_path=config, use_cuda=use_cuda), note
    # PiperVoice.load has no thread setting: build the same voice with our session options.
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    providers: list[Any] = (
        [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})]
        if use_cuda
        else ["CPUExecutionProvider"]
    )
    with open(config, encoding="utf-8") as f:
        cfg = PiperConfig.from_dict(json.load(f))
    session = onnxruntime.InferenceSession(path, sess_options=opts, providers=providers)
    return PiperVoice(session=session, config=cfg), note


class PiperServicer(backend_pb2_grpc.BackendServicer):
    """The Backend service for one piper voice."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.voice: Any = None
        self.model = ""
        self.max_chars = DEFAULT_MAX_CHARS
        self.speaker: int | None = None
        self.defaults: dict[str, float] = {}

    # -- helpers -----------------------------------------------------------------------

    def _speaker(self, voice: Any, name: str) -> int | None:
        """Speaker id for ``name`` (None: the voice's default)."""
        cfg = voice.config
        name = name.strip()
        if cfg.num_speakers <= 1 or not name or name.lower() in OPENAI_VOICES:
            return self.speaker
        if name in cfg.speaker_id_map:
            return cfg.speaker_id_map[name]
        if name.isdigit() and int(name) < cfg.num_speakers:
            return int(name)
        known = ", ".join(sorted(cfg.speaker_id_map)[:20]) or f"0-{cfg.num_speakers - 1}"
        raise BadRequest(f"unknown voice {name!r} for this model (speakers: {known})")

    def _syn_config(self, voice: Any, request: Any) -> Any:
        """Validate the request and build its SynthesisConfig."""
        from piper import SynthesisConfig

        text = request.text
        if not text.strip():
            raise BadRequest("text is empty")
        if len(text) > self.max_chars:
            raise BadRequest(
                f"text is too long for this voice ({len(text)} characters, limit {self.max_chars})"
            )
        raw = request.params.get("speed", "").strip()
        try:
            speed = float(raw) if raw else 0.0
        except ValueError:
            raise BadRequest(f"speed must be a number, got {raw!r}") from None
        speed = speed or 1.0
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise BadRequest(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {raw}")
        length = self.defaults.get("length_scale", voice.config.length_scale)
        return SynthesisConfig(
            speaker_id=self._speaker(voice, request.voice),
            length_scale=length / speed,
            noise_scale=self.defaults.get("noise_scale"),
            noise_w_scale=self.defaults.get("noise_w_scale"),
        )

    def _chunks(self, voice: Any, text: str, syn: Any) -> Iterator[Any]:
        """AudioChunks of ``text``; the lock is held for each sentence, not between them."""
        gen = iter(voice.synthesize(text, syn_config=syn))
        try:
            while True:
                with self.lock:
                    chunk = next(gen, None)
                if chunk is None:
                    return
                yield chunk
        finally:
            gen.close()

    def _prepare(self, request: Any, context: Any) -> tuple[Any, Any]:
        """Common checks of TTS/TTSStream: (voice, SynthesisConfig); aborts on a bad request."""
        voice = self.voice
        if voice is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "model not loaded")
        check_identity(request.ModelIdentity, self.model, context)
        try:
            return voice, self._syn_config(voice, request)
        except BadRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    # -- RPCs --------------------------------------------------------------------------

    def Health(self, request, context):
        return backend_pb2.Reply(message=b"OK")

    def LoadModel(self, request, context):
        path = model_file(request)
        if not path:
            return backend_pb2.Result(success=False, message="no model file given (ModelFile or Model)")
        if not os.path.isfile(path):
            return backend_pb2.Result(success=False, message=f"voice model not found: {path}")
        opts = parse_options(request.Options)
        config = opts.get("config") or path + ".json"
        if not os.path.isfile(config):
            return backend_pb2.Result(success=False, message=f"voice config not found: {config}")
        try:
            max_chars = int(opts.get("max_chars", DEFAULT_MAX_CHARS))
            defaults = {k: float(opts[k]) for k in ("noise_scale", "noise_w_scale", "length_scale") if k in opts}
        except ValueError as exc:
            return backend_pb2.Result(success=False, message=f"bad option: {exc}")
        with self.lock:
            self.voice = None
            try:
                voice, note = _load_voice(path, config, request.CUDA, request.Threads)
            except Exception as exc:  # noqa: BLE001 - reported to the caller
                return backend_pb2.Result(
                    success=False, message=f"failed to load {path}: {type(exc).__name__}: {exc}"
                )
            self.voice, self.max_chars, self.defaults, self.speaker = voice, max_chars, defaults, None
            self.model = request.Model or request.ModelFile
        if opts.get("speaker"):
            try:
                self.speaker = self._speaker(voice, opts["speaker"])
            except BadRequest as exc:
                self.voice = None
                return backend_pb2.Result(success=False, message=str(exc))
        cfg = voice.config
        return backend_pb2.Result(
            success=True,
            message=f"Model loaded successfully: {cfg.sample_rate} Hz, {cfg.num_speakers} speaker(s){note}",
        )

    def TTS(self, request, context):
        voice, syn = self._prepare(request, context)
        dst = request.dst
        if not dst:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no dst path given")
        folder = os.path.dirname(os.path.abspath(dst))
        if not os.path.isdir(folder):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"dst folder does not exist: {folder}")
        t0 = time.perf_counter()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(dst) + ".", suffix=".part")
        frames, rate, sentences = 0, voice.config.sample_rate, 0
        try:
            with os.fdopen(fd, "wb") as f, wave.open(f, "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(rate)
                for chunk in self._chunks(voice, request.text, syn):
                    data = chunk.audio_int16_bytes
                    wav.writeframes(data)
                    frames += len(data) // 2
                    sentences += 1
            if not sentences:
                raise BadRequest("the text has nothing to speak")
            os.replace(tmp, dst)
        except BadRequest as exc:
            os.unlink(tmp)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:  # noqa: BLE001
            if os.path.exists(tmp):
                os.unlink(tmp)
            context.abort(grpc.StatusCode.INTERNAL, f"piper: {type(exc).__name__}: {exc}")
        info = {
            "duration": round(frames / rate, 3),
            "sample_rate": rate,
            "channels": 1,
            "sample_width": 2,
            "sentences": sentences,
            "elapsed": round(time.perf_counter() - t0, 3),
        }
        return backend_pb2.Result(success=True, message=json.dumps(info))

    def TTSStream(self, request, context):
        voice, syn = self._prepare(request, context)
        rate = voice.config.sample_rate
        header = {"sample_rate": rate, "channels": 1, "sample_width": 2}
        yield backend_pb2.Reply(message=json.dumps(header).encode())
        sent = 0
        try:
            for chunk in self._chunks(voice, request.text, syn):
                yield backend_pb2.Reply(audio=chunk.audio_int16_bytes)
                sent += 1
        except Exception as exc:  # noqa: BLE001
            context.abort(grpc.StatusCode.INTERNAL, f"piper: {type(exc).__name__}: {exc}")
        if not sent:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the text has nothing to speak")

    def Status(self, request, context):
        return status_response(self.voice is not None, self.lock.locked())

    def Free(self, request, context):
        with self.lock:
            self.voice = None
            self.model = ""
        return backend_pb2.Result(success=True, message="model freed")
