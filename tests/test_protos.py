"""The committed gRPC stubs match protos/backend.proto, and the wire contract keeps LocalAI's numbers."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUBS = ("backend_pb2.py", "backend_pb2_grpc.py", "backend_pb2.pyi")
# grpcio-tools==1.85.1 is installed by tox (kernel env); `tox -e protos-gen` runs this
REGEN = (
    "python -m grpc_tools.protoc -Ilocalai/proto=protos --python_out=kernel "
    "--grpc_python_out=kernel --pyi_out=kernel protos/backend.proto"
)


def test_stubs_match_proto(tmp_path):
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-Ilocalai/proto=protos",
           f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}",
           "protos/backend.proto"]
    subprocess.run(cmd, cwd=ROOT, check=True)
    for name in STUBS:
        fresh = (tmp_path / "localai" / "proto" / name).read_bytes()
        committed = (ROOT / "kernel" / "localai" / "proto" / name).read_bytes()
        assert fresh == committed, (
            f"kernel/localai/proto/{name} is out of date with protos/backend.proto; "
            f"regenerate from the repo root with grpcio-tools==1.85.1:\n  {REGEN}")


def _num(message: str, field: str) -> int:
    from localai.proto import backend_pb2
    return backend_pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].number


@pytest.mark.parametrize("message,field,number", [
    ("PredictOptions", "Prompt", 1),
    ("PredictOptions", "Tokens", 4),
    ("PredictOptions", "StopPrompts", 13),
    ("PredictOptions", "UseTokenizerTemplate", 43),
    ("PredictOptions", "Messages", 44),
    ("PredictOptions", "Metadata", 52),
    ("PredictOptions", "ModelIdentity", 54),
    ("ModelOptions", "Model", 1),
    ("ModelOptions", "ModelFile", 21),
    ("ModelOptions", "ModelPath", 59),
    ("ModelOptions", "Options", 62),
    ("Reply", "message", 1),
    ("Reply", "chat_deltas", 8),
    ("EmbeddingResult", "layout", 5),
    ("TranscriptRequest", "dst", 2),
    ("GenerateImageRequest", "dst", 8),
    ("TTSRequest", "dst", 3),
    ("StatusResponse", "memory", 2),
])
def test_field_numbers(message, field, number):
    assert _num(message, field) == number


def test_enums_and_reserved():
    from localai.proto import backend_pb2 as pb
    assert pb.StatusResponse.ERROR == -1 and pb.StatusResponse.READY == 2
    assert pb.EMBEDDING_LAYOUT_FINAL == 1 and pb.EMBEDDING_LAYOUT_PER_TOKEN == 2
    assert 24 not in {f.number for f in pb.PredictOptions.DESCRIPTOR.fields}
    assert 19 not in {f.number for f in pb.ToolFormatMarkers.DESCRIPTOR.fields}


def test_service_shape():
    from localai.proto import backend_pb2, backend_pb2_grpc  # noqa: F401  (stubs import cleanly)
    svc = backend_pb2.DESCRIPTOR.services_by_name["Backend"]
    assert svc.full_name == "backend.Backend"
    assert len(svc.methods) == 52
    m = svc.methods_by_name
    assert (m["PredictStream"].client_streaming, m["PredictStream"].server_streaming) == (False, True)
    assert (m["TTSStream"].client_streaming, m["TTSStream"].server_streaming) == (False, True)
    assert (m["Forward"].client_streaming, m["Forward"].server_streaming) == (True, True)
    assert (m["Predict"].client_streaming, m["Predict"].server_streaming) == (False, False)
    assert m["LoadModel"].input_type.name == "ModelOptions"
