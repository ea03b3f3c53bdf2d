"""``local-ai plugins install/uninstall`` with real pip in a throwaway venv, and ``GET /plugins``."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import venv
from pathlib import Path

import httpx
import openai
import pytest

from localai.testing.server import LocalAIServer
from tests.kernel_helpers import write_model

REPO = Path(__file__).resolve().parents[1]

PLUGIN = textwrap.dedent("""\
    import sys
    from localai import hookimpl
    from localai.backends.spec import BackendSpec

    @hookimpl
    def localai_backends():
        return [BackendSpec(name="tiny", usecases=("chat", "completion"),
                            argv=(sys.executable, "-m", "localai.testing.echo_backend", "--addr", "{addr}"))]
    """)
BROKEN = 'raise RuntimeError("boom at import")\n'


def make_plugin(root: Path, dist: str, source: str) -> Path:
    """Write a one-module plugin project ``<root>/<dist>`` (setuptools, ``localai`` entry point)."""
    project = root / dist
    (project / dist).mkdir(parents=True)
    (project / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "0.1"

        [project.entry-points.localai]
        {dist} = "{dist}.plugin"
        """))
    (project / dist / "__init__.py").write_text("")
    (project / dist / "plugin.py").write_text(source)
    return project


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A plain venv with the kernel installed editable; returns (python, cwd, subprocess env)."""
    root = tmp_path_factory.mktemp("plugin-venv")
    venv.create(root / "venv", with_pip=True)
    python = str(root / "venv" / "bin" / "python")
    environ = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith("LOCALAI_")}
    done = subprocess.run([python, "-m", "pip", "install", "-q", "-e", str(REPO)], env=environ,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return python, root, environ


def local_ai(env, *args: str) -> subprocess.CompletedProcess:
    python, cwd, environ = env
    return subprocess.run([python, "-m", "localai", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=300)


def listing(env) -> dict[str, dict]:
    done = local_ai(env, "plugins", "--json")
    assert done.returncode == 0, done.stderr
    return {row["name"]: row for row in json.loads(done.stdout)}


def server(env, models: Path) -> LocalAIServer:
    python, cwd, environ = env
    return LocalAIServer(models, python=python, cwd=cwd, env={**environ, "PYTHONPATH": ""})


def install(env, *args: str) -> subprocess.CompletedProcess:
    done = local_ai(env, "plugins", "install", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_install_list_serve(env, tmp_path):
    done = install(env, str(make_plugin(tmp_path, "tinyplug", PLUGIN)))
    assert "Successfully installed tinyplug-0.1" in done.stdout  # pip's own output, streamed
    assert "installed plugin tinyplug 0.1" in done.stdout
    row = listing(env)["tinyplug"]
    assert row == {"name": "tinyplug", "distribution": "tinyplug", "version": "0.1", "builtin": False,
                   "hooks": ["localai_backends"], "backends": ["tiny"], "error": None}
    pins = local_ai(env, "plugins", "--requirements").stdout.splitlines()
    assert "tinyplug==0.1" in pins and not any(p.startswith("localai-kernel") for p in pins)

    write_model(tmp_path / "models", "tiny-chat", backend="tiny")
    with server(env, tmp_path / "models") as srv:
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="x")
        reply = client.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "hi there"}])
        assert "hi there" in reply.choices[0].message.content
        plugins = {row["name"]: row for row in httpx.get(srv.url("/plugins")).json()}
        assert plugins["tinyplug"] == row


def test_uninstall(env, tmp_path):
    install(env, str(make_plugin(tmp_path, "tinyplug", PLUGIN)), "--force-reinstall", "--no-deps")
    assert "tinyplug" in listing(env)
    done = local_ai(env, "plugins", "uninstall", "tinyplug")
    assert done.returncode == 0, done.stderr
    assert "removed plugin tinyplug" in done.stdout
    assert "tinyplug" not in listing(env)
    assert "tinyplug==0.1" not in local_ai(env, "plugins", "--requirements").stdout
    (tmp_path / "models").mkdir()
    with server(env, tmp_path / "models") as srv:
        names = {row["name"] for row in httpx.get(srv.url("/plugins")).json()}
    assert "tinyplug" not in names and "localai.default_plugins.local_launcher" in names


def test_broken_plugin_is_listed_and_server_starts(env, tmp_path):
    install(env, "-e", str(make_plugin(tmp_path, "brokenplug", BROKEN)))
    try:
        assert "boom at import" in listing(env)["brokenplug"]["error"]
        human = local_ai(env, "plugins")
        assert human.returncode == 0
        assert "BROKEN: RuntimeError: boom at import" in human.stdout
        (tmp_path / "models").mkdir()
        with server(env, tmp_path / "models") as srv:
            assert httpx.get(srv.url("/v1/models")).status_code == 200
            plugins = {row["name"]: row for row in httpx.get(srv.url("/plugins")).json()}
            assert "boom at import" in plugins["brokenplug"]["error"]
    finally:
        local_ai(env, "plugins", "uninstall", "brokenplug")
    assert "brokenplug" not in listing(env)


def test_refusals_and_pip_errors(env, tmp_path):
    done = local_ai(env, "plugins", "uninstall", "LocalAI_Kernel")
    assert done.returncode != 0
    assert "refusing to uninstall localai-kernel" in done.stderr
    assert "localai.default_plugins.local_launcher" in listing(env)  # still installed

    missing = str(tmp_path / "no-such-plugin")
    done = local_ai(env, "plugins", "install", missing)
    pip = subprocess.run([env[0], "-m", "pip", "install", missing], env=env[2], capture_output=True)
    assert done.returncode == pip.returncode != 0
    assert "no-such-plugin" in done.stderr

    assert local_ai(env, "plugins", "install").returncode == 2  # usage error: nothing to install
