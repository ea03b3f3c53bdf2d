"""The backend conformance suite, and the third-party backend template (contrib/backend-template)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "contrib" / "backend-template"
RUN_SH = TEMPLATE / "run.sh"
CORPUS = "the cat sat on the mat and the dog ran to the park where the cat slept on the grass"

BAD_BACKEND = '''
from localai.backend_server import serve
from localai.proto import backend_pb2 as pb
from localai.testing.echo_backend import EchoBackend


class Unhealthy(EchoBackend):
    def Health(self, request, context):
        return pb.Reply(message=b"NOT OK")


serve(Unhealthy())
'''


def conformance(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``pytest --pyargs localai.testing.conformance ARGS`` in a subprocess."""
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "localai.testing.conformance", "-q",
           "-p", "no:cacheprovider", *args]
    full_env = {**os.environ, "BACKEND_PYTHON": sys.executable, **(env or {})}
    for name in ("LOCALAI_BACKEND_COMMAND", "LOCALAI_BACKEND_CAPS", "BACKEND_TEST_CAPS", "LOCALAI_BACKEND_MODEL"):
        if env is None or name not in env:
            full_env.pop(name, None)
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120)


def test_conformance_passes_for_the_template(tmp_path):
    result = conformance(tmp_path, "--backend-command", str(RUN_SH), "-rs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 passed, 2 deselected" in result.stdout, result.stdout


def test_conformance_passes_for_the_template_with_a_model_file(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    result = conformance(tmp_path, env={"LOCALAI_BACKEND_COMMAND": str(RUN_SH),
                                        "LOCALAI_BACKEND_MODEL": str(corpus)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_conformance_passes_for_the_echo_backend(tmp_path):
    result = conformance(tmp_path, "--backend-command", f"{sys.executable} -m localai.testing.echo_backend",
                         "--backend-caps", "health,load,predict,stream,embeddings,tokenize,rerank")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "10 passed" in result.stdout, result.stdout


def test_conformance_fails_for_an_unhealthy_backend(tmp_path):
    (tmp_path / "bad_backend.py").write_text(BAD_BACKEND)
    run_sh = tmp_path / "run.sh"
    run_sh.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "bad_backend.py"}" "$@"\n')
    run_sh.chmod(0o755)
    result = conformance(tmp_path, "--backend-command", str(run_sh), "--backend-timeout", "3")
    assert result.returncode != 0, result.stdout
    assert "NOT OK" in result.stdout, result.stdout


def test_conformance_without_a_command_fails_clearly(tmp_path):
    result = conformance(tmp_path)
    assert result.returncode != 0
    assert "--backend-command" in result.stdout and "skipped" not in result.stdout, result.stdout


def test_template_stubs_match_the_proto(tmp_path):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"--python_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", "backend.proto"], check=True)
    for name in ("backend_pb2.py", "backend_pb2_grpc.py"):
        assert (tmp_path / name).read_bytes() == (TEMPLATE / name).read_bytes(), (
            f"contrib/backend-template/{name} is out of date: run contrib/backend-template/protogen.sh "
            "with grpcio-tools==1.85.1")


def test_template_layout():
    assert RUN_SH.stat().st_mode & 0o111 and RUN_SH.read_text().startswith("#!/bin/sh")
    assert (TEMPLATE / "VERSION").read_text().strip() == "1.0.0"
    tree = ast.parse((TEMPLATE / "backend.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.split(".")[0] == "localai"}, "the template must not import localai"
    index = yaml.safe_load((ROOT / "contrib" / "galleries" / "index.yaml").read_text())
    by_name = {e["name"]: e for e in index}
    assert "uri" not in by_name["template-backend"]
    assert by_name["template-backend"]["capabilities"] == {"default": "cpu-template-backend",
                                                           "nvidia": "cuda12-template-backend"}
    assert by_name["cpu-template-backend"]["uri"] == "127.0.0.1:5000/localai/template-backend:latest"
    assert by_name["cpu-template-backend"]["alias"] == "template-backend"


def test_template_end_to_end_through_local_ai(tmp_path, localai_server):
    models = tmp_path / "models"
    models.mkdir()
    (models / "corpus.txt").write_text(CORPUS)
    (models / "markov.yaml").write_text(yaml.safe_dump({
        "name": "markov", "backend": "template", "parameters": {"model": "corpus.txt"},
        "template": {"use_tokenizer_template": True}, "known_usecases": ["chat", "completion"],
    }))
    server = localai_server(models, env={"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"template:{RUN_SH}",
                                         "BACKEND_PYTHON": sys.executable})
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=60)
    ask = dict(model="markov", messages=[{"role": "user", "content": "tell me about the dog"}],
               seed=7, max_tokens=12)

    first = client.chat.completions.create(**ask)
    text = first.choices[0].message.content
    assert text.split()[0] == "ran"  # seeded from the last known word of the user message: dog -> ran
    assert len(text.split()) == 12 and set(text.split()) <= set(CORPUS.split())
    assert first.usage.completion_tokens == 12 and first.usage.prompt_tokens == 5
    assert client.chat.completions.create(**ask).choices[0].message.content == text

    chunks = list(client.chat.completions.create(**ask, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 12

    other = client.chat.completions.create(**{**ask, "seed": 8}).choices[0].message.content
    assert other.split()[0] == "ran"
