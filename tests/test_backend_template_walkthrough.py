"""The backend template's README walk-through, run as written, and the portable artifact it makes.

``contrib/backend-template/README.md`` section 3 lists the commands from a checkout to a chat:
``./install.sh`` (dependencies bundled with ``pip install --target``), ``local-ai backends package
--push`` to a real registry (Debian's ``docker-registry``), a gallery entry, ``local-ai backends
install``, a model YAML, ``local-ai run``, a chat with the openai SDK (whole and streamed) and
``local-ai backends uninstall``. The test runs exactly those code blocks, in order, in one bash
shell, on a clean copy of the template, changing only the registry (``127.0.0.1:5000``) and the
server address (``127.0.0.1:8080``) to its own. The Python that runs the tests plays the host's
Python: its ``bin`` directory comes first on ``PATH``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from localai.backends.process import LocalProcess, free_port
from localai.backends.spec import BackendSpec
from localai.gallery import oci

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "contrib" / "backend-template"
README = TEMPLATE / "README.md"
SECTION = "## 3. Package, push, install and chat (walk-through)"
README_REGISTRY = "127.0.0.1:5000"
README_ADDRESS = "127.0.0.1:8080"
CORPUS = "the cat sat on the mat and the dog ran to the park where the cat slept on the grass"
# settings from the caller's environment that would change what the commands do
CLEARED = ("LOCALAI_BACKEND_GALLERIES", "BACKEND_GALLERIES", "LOCALAI_MODELS_PATH", "MODELS_PATH",
           "LOCALAI_BACKENDS_PATH", "BACKENDS_PATH", "LOCALAI_ADDRESS", "ADDRESS", "LOCALAI_API_KEY", "API_KEY",
           "LOCALAI_EXTERNAL_GRPC_BACKENDS", "LOCALAI_EXTERNAL_BACKENDS", "BACKEND_PYTHON", "LOCALAI_BACKEND_PYTHON",
           "LOCALAI_GALLERIES", "GALLERIES", "PYTHON")


def walkthrough_blocks() -> list[tuple[str, str]]:
    """The ``sh`` and ``python`` code blocks of the README's walk-through section, in order."""
    text = README.read_text()
    assert SECTION in text, f"{README} lost its walk-through section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```(sh|python)\n(.*?)^```$", section, re.S | re.M)
    assert len(blocks) >= 8, blocks
    return blocks


def walkthrough_script(registry: str, address: str) -> str:
    """One bash script of the blocks; a python block runs as ``python3 - <<EOF`` (as ``python3 chat.py``)."""
    parts = ["set -ex"]
    for lang, code in walkthrough_blocks():
        code = code.replace(README_REGISTRY, registry).replace(README_ADDRESS, address)
        parts.append(f"python3 - <<'PYTHON_EOF'\n{code}PYTHON_EOF" if lang == "python" else code.rstrip("\n"))
    return "\n".join(parts) + "\n"


def clean_copy(dest_root: Path) -> Path:
    """``dest_root/contrib/backend-template``: the template without what its .gitignore lists."""
    ignored = [line.strip().rstrip("/") for line in (TEMPLATE / ".gitignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    dest = dest_root / "contrib" / "backend-template"
    shutil.copytree(TEMPLATE, dest, ignore=shutil.ignore_patterns(*ignored, ".pytest_cache"), symlinks=True)
    return dest


def shell_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # no system-wide backends dir of this machine leaks in (the README's user has none)
    env["LOCALAI_BACKENDS_SYSTEM_PATH"] = str(tmp_path / "system-backends")
    return env


def test_readme_walkthrough_as_written(tmp_path, oci_registry):
    copy = clean_copy(tmp_path)
    assert not (copy / "deps").exists() and (copy / "install.sh").is_file()
    address = f"127.0.0.1:{free_port()}"
    script = walkthrough_script(oci_registry.host, address)
    started = time.monotonic()
    # output to files, not pipes: a server left in the background by a failed step keeps pipes open
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=shell_env(tmp_path), stdout=stdout,
                                stderr=stderr, start_new_session=True)
        try:
            proc.wait(timeout=240)
        finally:
            try:  # the server the script started in the background, if a step failed before `kill %1`
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    elapsed = time.monotonic() - started
    out, err = (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()
    report = f"--- script\n{script}\n--- stdout\n{out}\n--- stderr\n{err[-20000:]}"
    assert proc.returncode == 0, report
    print(f"README walk-through: {elapsed:.1f} s")

    work = tmp_path / "my-backend"
    assert (work / "deps" / "ABI").is_file() and (work / "deps" / "grpc").is_dir(), report
    assert not [p for p in work.rglob("*") if p.is_symlink()], "install.sh made symlinks"
    assert f"pushed {oci_registry.host}/me/my-backend:1.0@sha256:" in out, report
    assert oci.remote_digest(f"{oci_registry.host}/me/my-backend:1.0").startswith("sha256:")
    assert "installed my-backend in backends/my-backend" in out, report  # the default ./backends

    # the chat: the same 12 words whole and streamed, from the corpus, seeded by "dog" -> "ran"
    replies = [line for line in out.splitlines()
               if len(line.split()) == 12 and set(line.split()) <= set(CORPUS.split())]
    assert len(replies) == 2 and replies[0] == replies[1], report
    assert replies[0].split()[0] == "ran", report

    assert "removed my-backend" in out, report
    assert not (work / "backends" / "my-backend").exists()


def test_run_sh_refuses_deps_built_for_another_python(tmp_path):
    copy = clean_copy(tmp_path)
    (copy / "deps").mkdir()
    (copy / "deps" / "ABI").write_text("cpython-39-x86_64-linux-gnu\n")
    env = {**shell_env(tmp_path), "LOCALAI_BACKEND_PYTHON": sys.executable}
    proc = subprocess.run([str(copy / "run.sh"), "--addr", f"127.0.0.1:{free_port()}"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "deps/ was built for cpython-39-x86_64-linux-gnu" in proc.stderr, proc.stderr
    assert f"{sys.executable} is cpython-" in proc.stderr and f"PYTHON={sys.executable} ./install.sh" in proc.stderr


def test_the_abi_error_reaches_the_api_client(tmp_path, localai_server):
    copy = clean_copy(tmp_path)
    (copy / "deps").mkdir()
    (copy / "deps" / "ABI").write_text("cpython-39-x86_64-linux-gnu\n")
    models = tmp_path / "models"
    models.mkdir()
    (models / "markov.yaml").write_text("name: markov\nbackend: template\nknown_usecases: [chat]\n"
                                        "template: {use_tokenizer_template: true}\n")
    server = localai_server(models, env={"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"template:{copy / 'run.sh'}"})
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=60)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="markov", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code >= 500
    message = str(caught.value)
    assert "deps/ was built for cpython-39-x86_64-linux-gnu" in message and "./install.sh" in message, message


def test_package_refuses_a_venv_with_a_hint(tmp_path, oci_registry):
    backend = tmp_path / "venv-backend"
    backend.mkdir()
    (backend / "run.sh").write_text('#!/bin/sh\nexec "$(dirname "$0")/venv/bin/python" backend.py "$@"\n')
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(backend / "venv")], check=True, timeout=120)
    tag = f"{oci_registry.host}/me/venv-backend:1"
    proc = subprocess.run([sys.executable, "-m", "localai", "backends", "package", str(backend), "--tag", tag,
                           "--push", "--output", str(tmp_path / "out.tar")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "symlinks pointing outside the backend directory, which the installer refuses" in proc.stderr
    assert "venv/bin/python" in proc.stderr and "pip install --target" in proc.stderr, proc.stderr
    assert not (tmp_path / "out.tar").exists()
    with pytest.raises(oci.OCIError, match="not found"):
        oci.remote_digest(tag)


def test_escaping_symlinks(tmp_path):
    root = tmp_path / "b"
    (root / "lib" / "sub").mkdir(parents=True)
    (root / "lib" / "data").write_text("x")
    (root / "lib" / "ok").symlink_to("data")
    (root / "lib" / "sub" / "ok-up").symlink_to("../data")
    (root / "lib" / "dangling-inside").symlink_to("missing")
    (root / "lib" / "abs").symlink_to("/usr/bin/env")
    (root / "lib" / "out").symlink_to("../../elsewhere")
    (root / "lib" / "hop").symlink_to("out")  # inside lexically, outside once resolved
    assert oci.escaping_symlinks(root) == [("lib/abs", "/usr/bin/env"), ("lib/hop", "out"),
                                           ("lib/out", "../../elsewhere")]


def test_backends_get_the_kernels_python(monkeypatch):
    spec = BackendSpec(name="x", argv=("run.sh", "--addr", "{addr}"))
    monkeypatch.delenv("LOCALAI_BACKEND_PYTHON", raising=False)
    assert LocalProcess(spec, "127.0.0.1:1", "m").env["LOCALAI_BACKEND_PYTHON"] == sys.executable
    monkeypatch.setenv("LOCALAI_BACKEND_PYTHON", "/opt/python3.11/bin/python3")  # the operator's choice wins
    assert LocalProcess(spec, "127.0.0.1:1", "m").env["LOCALAI_BACKEND_PYTHON"] == "/opt/python3.11/bin/python3"
