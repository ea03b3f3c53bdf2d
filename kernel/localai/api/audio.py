"""Audio: speech-to-text (``/v1/audio/transcriptions``, ``/translations``) and text-to-speech
(``/v1/audio/speech``, LocalAI's ``/tts``)."""

from __future__ import annotations

import importlib.util
import io
import os
import tempfile
import uuid
import wave
from pathlib import Path
from typing import Any

import grpc
from pydantic import Field, field_validator
from quart import Blueprint, Response, request

from ..backends.http_upstream import is_http_model
from ..backends.outputs import request_dir
from ..chat.models import model_for
from ..errors import BadRequest
from ..proto import backend_pb2
from .common import json_body, json_response, state, versioned
from .forward import forward_json, forward_multipart
from .schemas import Request, parse

bp = Blueprint("audio", __name__)
route = versioned(bp)

TRANSCRIPT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
NS = 1_000_000_000


# -- speech to text -----------------------------------------------------------------------


def timestamp(seconds: float, separator: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def subtitles(segments: list[dict[str, Any]], vtt: bool) -> str:
    blocks = []
    for number, seg in enumerate(segments, 1):
        times = f"{timestamp(seg['start'], '.' if vtt else ',')} --> {timestamp(seg['end'], '.' if vtt else ',')}"
        blocks.append(f"{times}\n{seg['text']}\n" if vtt else f"{number}\n{times}\n{seg['text']}\n")
    return ("WEBVTT\n\n" if vtt else "") + "\n".join(blocks)


def segment_dicts(result: backend_pb2.TranscriptResult, temperature: float) -> list[dict[str, Any]]:
    return [
        {"id": seg.id, "seek": 0, "start": seg.start / NS, "end": seg.end / NS, "text": seg.text.strip(),
         "tokens": list(seg.tokens), "temperature": temperature, "avg_logprob": 0.0,
         "compression_ratio": 0.0, "no_speech_prob": 0.0}
        for seg in result.segments
    ]


async def transcribe(translate: bool):
    form = await request.form
    files = await request.files
    upload = files.get("file")
    if upload is None or not upload.filename:
        raise BadRequest("send the audio as a multipart form field named 'file'", param="file")
    response_format = form.get("response_format") or "json"
    if response_format not in TRANSCRIPT_FORMATS:
        raise BadRequest(f"response_format must be one of {', '.join(TRANSCRIPT_FORMATS)}", param="response_format")
    try:
        temperature = float(form.get("temperature") or 0)
    except ValueError:
        raise BadRequest("temperature must be a number", param="temperature") from None
    granularities = form.getlist("timestamp_granularities[]") or form.getlist("timestamp_granularities")
    config = model_for(state(), form.get("model"), "transcript")
    if is_http_model(config):
        fields = {key: form.getlist(key) if len(form.getlist(key)) > 1 else form[key] for key in form}
        content = upload.read()
        return await forward_multipart(config, "/audio/translations" if translate else "/audio/transcriptions",
                                       fields, {"file": (upload.filename, content, upload.content_type)})
    app_state = state()
    suffix = Path(upload.filename).suffix[:10]
    fd, path = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=app_state.upload_dir)
    os.close(fd)
    try:
        await upload.save(path)
        if os.path.getsize(path) == 0:
            raise BadRequest("the uploaded file is empty", param="file")
        options = backend_pb2.TranscriptRequest(
            dst=path, language=form.get("language") or config.parameters.model_extra.get("language", "") or "",
            translate=translate, prompt=form.get("prompt") or "", temperature=temperature,
            threads=config.threads or app_state.settings.threads or 0, timestamp_granularities=granularities)
        async with app_state.manager.use(config.name) as model:
            try:
                result = await model.stub.AudioTranscription(options)
            except grpc.aio.AioRpcError as exc:
                raise await model.rpc_error(exc, "AudioTranscription") from None
    finally:
        os.unlink(path)
    text = result.text.strip()
    segments = segment_dicts(result, temperature)
    if response_format == "text":
        return Response(text + "\n", content_type="text/plain; charset=utf-8")
    if response_format in ("srt", "vtt"):
        return Response(subtitles(segments, response_format == "vtt"), content_type="text/plain; charset=utf-8")
    if response_format == "json":
        return json_response({"text": text})
    body: dict[str, Any] = {"task": "translate" if translate else "transcribe", "language": result.language,
                            "duration": result.duration, "text": text, "segments": segments}
    if "word" in granularities:
        body["words"] = [{"word": w.text.strip(), "start": w.start / NS, "end": w.end / NS}
                         for seg in result.segments for w in seg.words]
    return json_response(body)


@route("/audio/transcriptions", methods=["POST"])
async def transcriptions():
    return await transcribe(translate=False)


@route("/audio/translations", methods=["POST"])
async def translations():
    return await transcribe(translate=True)


# -- text to speech -----------------------------------------------------------------------


class SpeechRequest(Request):
    model: str | None = None
    input: str = Field(min_length=1, max_length=16384)
    voice: str = ""
    response_format: str | None = None  # /v1/audio/speech: mp3 (OpenAI's default); /tts: wav
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    language: str | None = None
    instructions: str | None = None

    @field_validator("input")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


AUDIO_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "mp3": "audio/mpeg", "flac": "audio/flac"}


def convert_wav(data: bytes, response_format: str) -> bytes:
    """WAV from the backend → the requested format (wav and pcm built in; flac/mp3 if installed)."""
    if response_format == "wav":
        return data
    with wave.open(io.BytesIO(data)) as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        frames = wav.readframes(wav.getnframes())
    if response_format == "pcm":
        return frames
    if response_format == "mp3":
        try:
            import lameenc
        except ImportError:
            raise BadRequest("response_format mp3 needs the 'lameenc' package (pip install localai-kernel[audio])",
                             param="response_format") from None
        encoder = lameenc.Encoder()
        encoder.set_bit_rate(64)
        encoder.set_in_sample_rate(rate)
        encoder.set_channels(channels)
        encoder.set_quality(5)
        return bytes(encoder.encode(frames) + encoder.flush())
    if response_format == "flac":
        try:
            import numpy
            import soundfile
        except ImportError:
            raise BadRequest("response_format flac needs the 'soundfile' package (pip install localai-kernel[audio])",
                             param="response_format") from None
        samples = numpy.frombuffer(frames, dtype=numpy.int16).reshape(-1, channels)
        out = io.BytesIO()
        soundfile.write(out, samples, rate, format="FLAC")
        return out.getvalue()
    raise BadRequest(f"response_format must be one of {', '.join(AUDIO_TYPES)}", param="response_format")


def default_speech_format() -> str:
    """OpenAI's default, mp3, when the encoder (the ``audio`` extra) is installed; else WAV, labelled so."""
    return "mp3" if importlib.util.find_spec("lameenc") is not None else "wav"


async def speak(req: SpeechRequest, default_format: str) -> Response:
    req.response_format = req.response_format or default_format
    if req.response_format not in AUDIO_TYPES:
        raise BadRequest(f"response_format must be one of {', '.join(AUDIO_TYPES)}", param="response_format")
    config = model_for(state(), req.model, "tts")
    if is_http_model(config):
        return await forward_json(config, "/audio/speech", req.model_dump(exclude_none=True), binary=True)
    app_state = state()
    # the backend writes into a directory made for this request, removed with what is in it
    with request_dir(app_state.output_dir) as folder:
        path = folder / f"{uuid.uuid4().hex}.wav"
        params = {"speed": str(req.speed)}
        options = backend_pb2.TTSRequest(text=req.input, model=config.parameters.model, dst=str(path),
                                         voice=req.voice or str(config.tts.get("voice", "")), params=params)
        if req.language:
            options.language = req.language
        if req.instructions:
            options.instructions = req.instructions
        async with app_state.manager.use(config.name) as model:
            try:
                result = await model.stub.TTS(options)
            except grpc.aio.AioRpcError as exc:
                raise await model.rpc_error(exc, "TTS") from None
        if not result.success or not path.is_file():
            raise BadRequest(f"speech synthesis failed: {result.message or 'no audio written'}")
        audio = convert_wav(path.read_bytes(), req.response_format)
    return Response(audio, content_type=AUDIO_TYPES[req.response_format])


@route("/audio/speech", methods=["POST"])
async def speech():
    return await speak(parse(SpeechRequest, await json_body()), default_speech_format())


@bp.post("/tts")
async def tts():
    """LocalAI's TTS route: ``{model, input, voice, language}`` → WAV."""
    return await speak(parse(SpeechRequest, await json_body()), "wav")
