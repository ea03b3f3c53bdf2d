"""Plugins found through real ``localai`` entry points (dist-info folders on PYTHONPATH, no pip)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import openai
import pytest

from tests.kernel_helpers import free_port, write_model

BROKEN = 'raise RuntimeError("boom at import")\n'
GOOD = "from localai import hookimpl\n\n@hookimpl\ndef localai_gallery_sources():\n    return []\n"


def backend_plugin(backend: str) -> str:
    return textwrap.dedent(f"""\
        import sys
        from localai import hookimpl
        from localai.backends.spec import BackendSpec

        @hookimpl
        def localai_backends():
            return [BackendSpec(name={backend!r},
                                argv=(sys.executable, "-m", "localai.testing.echo_backend", "--addr", "{{addr}}"),
                                usecases=("chat", "completion"))]
        """)


FULL = backend_plugin("plugecho") + textwrap.dedent("""\
    import asyncio, json, os
    from pathlib import Path

    MARKS = Path(os.environ["LP_MARKS"])

    @hookimpl
    def localai_model_configs(settings):
        return [{"name": "plug-model", "backend": "plugecho", "parameters": {"model": "pm"}}]

    @hookimpl
    def localai_register_routes(app):
        @app.get("/plugin/hello")
        async def hello():
            return {"hello": "from plugin"}

    @hookimpl
    def localai_startup(app):
        async def started():
            await asyncio.sleep(0)
            (MARKS / "startup").write_text("ok")
        return started()

    @hookimpl
    def localai_shutdown(app):
        (MARKS / "shutdown").write_text("ok")

    @hookimpl
    def localai_after_inference(request, result):
        with open(MARKS / "after", "a") as f:
            f.write(json.dumps({"model": request.get("model"), "result": result}) + "\\n")

    @hookimpl
    def localai_register_commands(cli):
        @cli.command("plugin-hello")
        def plugin_hello():
            print("hello from the plugin command")
    """)

ADJUST = textwrap.dedent("""\
    from localai import hookimpl

    @hookimpl
    def localai_before_inference(request):
        request["max_tokens"] = 1
    """)


def make_plugin(root: Path, ep_name: str, source: str, dist: str | None = None) -> str:
    """Write module ``lp_<ep_name>`` and a dist-info with a ``localai`` entry point; return the dist name."""
    module = "lp_" + ep_name.replace("-", "_")
    dist = dist or f"lp-{ep_name}"
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[localai]\n{ep_name} = {module}\n")
    (root / f"{module}.py").write_text(source)
    return dist


def plugin_env(root: Path, **extra: str) -> dict[str, str]:
    """The caller's env without LOCALAI_* settings, plus ``extra``, with ``root`` on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAI_")}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    return env


def localai(root: Path, *args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localai", *args], env=plugin_env(root, **env),
                          capture_output=True, text=True, timeout=timeout, cwd=root)


def plugins_json(root: Path, **env: str) -> dict[str, dict]:
    result = localai(root, "plugins", "--json", **env)
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def run_fails(root: Path, models: Path, **env: str) -> str:
    """``local-ai run`` must exit non-zero quickly; return its output."""
    result = localai(root, "run", "--address", f"127.0.0.1:{free_port()}", "--models-path", str(models), **env)
    assert result.returncode != 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "site"
    path.mkdir()
    return path


def test_broken_plugin_is_listed_and_server_still_starts(root, tmp_path, localai_server):
    make_plugin(root, "broken", BROKEN)
    make_plugin(root, "good", GOOD)
    rows = plugins_json(root)
    assert rows["broken"]["error"] == "RuntimeError: boom at import"
    assert rows["broken"]["distribution"] == "lp-broken" and rows["broken"]["version"] == "0.1"
    assert rows["good"]["error"] is None and rows["good"]["hooks"] == ["localai_gallery_sources"]
    assert rows["localai.default_plugins.local_launcher"]["builtin"] is True

    models = tmp_path / "models"
    write_model(models, "echo")
    listed = localai(root, "models", "list", "--json", "--models-path", str(models))
    assert listed.returncode == 0, listed.stderr
    assert "echo" in [m["name"] for m in json.loads(listed.stdout)["models"]]

    server = localai_server(models, env=plugin_env(root))
    response = httpx.get(server.url("/v1/models"))
    assert response.status_code == 200 and "echo" in [m["id"] for m in response.json()["data"]]
    plugins = {p["name"]: p for p in httpx.get(server.url("/system")).json()["plugins"]}
    assert "boom at import" in plugins["broken"]["error"]
    assert "boom at import" in server.log()


def test_strict_plugins_make_run_fail(root, tmp_path):
    make_plugin(root, "broken", BROKEN)
    output = run_fails(root, tmp_path / "models", LOCALAI_STRICT_PLUGINS="1")
    assert "broken" in output and "boom at import" in output


def test_allow_and_block_lists(root):
    make_plugin(root, "one", GOOD)
    make_plugin(root, "two", GOOD)
    make_plugin(root, "broken", BROKEN)

    def external(**env):
        return {name for name, row in plugins_json(root, **env).items() if not row["builtin"]}

    assert {"one", "two", "broken"} <= external()
    assert external(LOCALAI_LOAD_PLUGINS="one") == {"one"}
    assert external(LOCALAI_LOAD_PLUGINS="lp-two,broken") == {"two", "broken"}  # distribution or entry point
    assert external(LOCALAI_LOAD_PLUGINS="") == set()
    blocked = external(LOCALAI_DISABLE_PLUGINS="broken lp-two")
    assert "one" in blocked and not {"two", "broken"} & blocked
    assert external(LOCALAI_LOAD_PLUGINS="one,two", LOCALAI_DISABLE_PLUGINS="two") == {"one"}


def test_duplicate_backend_names_are_an_error(root, tmp_path):
    make_plugin(root, "dup-a", backend_plugin("twin"))
    make_plugin(root, "dup-b", backend_plugin("twin"))
    output = run_fails(root, tmp_path / "models")
    assert "twin" in output and "dup-a" in output and "dup-b" in output
    rows = plugins_json(root)
    owners = [rows[name] for name in ("dup-a", "dup-b")]
    assert sorted(bool(row["error"]) for row in owners) == [False, True]
    winner, loser = sorted(owners, key=lambda row: bool(row["error"]))
    assert winner["backends"] == ["twin"] and loser["backends"] == []
    assert "twin" in loser["error"] and winner["name"] in loser["error"]


def test_plugin_backend_model_route_and_hooks_end_to_end(root, tmp_path, localai_server):
    make_plugin(root, "full", FULL)
    marks = tmp_path / "marks"
    marks.mkdir()
    rows = plugins_json(root, LP_MARKS=str(marks))
    assert rows["full"]["backends"] == ["plugecho"] and rows["full"]["error"] is None
    listed = localai(root, "models", "list", "--json", "--models-path", str(tmp_path / "models"), LP_MARKS=str(marks))
    assert {"name": "plug-model", "backend": "plugecho", "source": "plugin:full"} in json.loads(listed.stdout)["models"]
    command = localai(root, "plugin-hello", LP_MARKS=str(marks))
    assert command.returncode == 0 and "hello from the plugin command" in command.stdout

    server = localai_server(env=plugin_env(root, LP_MARKS=str(marks)))
    assert (marks / "startup").read_text() == "ok"
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    assert "plug-model" in [m.id for m in client.models.list()]
    reply = client.chat.completions.create(model="plug-model", messages=[{"role": "user", "content": "hi there"}])
    assert reply.choices[0].message.content == "echo: user: hi there assistant:"
    stream = client.chat.completions.create(model="plug-model", stream=True,
                                            messages=[{"role": "user", "content": "hi there"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "echo: user: hi there assistant:"
    assert httpx.get(server.url("/plugin/hello")).json() == {"hello": "from plugin"}
    after = [json.loads(line) for line in (marks / "after").read_text().splitlines()]
    assert [a["model"] for a in after] == ["plug-model", "plug-model"]
    assert after[0]["result"]["choices"][0]["message"]["content"] == reply.choices[0].message.content
    assert after[1]["result"]["finish_reason"] == "stop"
    assert server.stop() == 0
    assert (marks / "shutdown").read_text() == "ok"


def test_before_inference_can_adjust_the_request(root, tmp_path, echo_backend, localai_server):
    make_plugin(root, "adjust", ADJUST)
    models = tmp_path / "models"
    write_model(models, "echo")
    env = plugin_env(root, LOCALAI_EXTERNAL_GRPC_BACKENDS=f"echo:{echo_backend}")
    server = localai_server(models, env=env)
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a b c"}])
    assert reply.choices[0].message.content == "echo:"
    assert reply.choices[0].finish_reason == "length"
    completion = client.completions.create(model="echo", prompt="a b c")
    assert completion.choices[0].text == "echo:"


TYPO = textwrap.dedent("""\
    from localai import hookimpl

    @hookimpl
    def localai_backend(settings):  # misspelled: localai_backends
        return []

    @hookimpl
    def localai_register_routes(app):
        @app.get("/typo/hello")
        async def hello():
            return {"hello": "typo"}
    """)


def test_misspelled_hook_is_a_load_error(root, tmp_path, localai_server):
    make_plugin(root, "typo", TYPO)
    make_plugin(root, "good", GOOD)
    rows = plugins_json(root)
    assert "unknown hook localai_backend" in rows["typo"]["error"] and rows["typo"]["hooks"] == []
    assert rows["good"]["error"] is None  # one plugin's typo does not break the others

    output = run_fails(root, tmp_path / "models", LOCALAI_STRICT_PLUGINS="1")
    assert "typo" in output and "unknown hook localai_backend" in output

    server = localai_server(tmp_path / "models", env=plugin_env(root))
    assert httpx.get(server.url("/typo/hello")).status_code == 404  # none of its hooks run
    plugins = {p["name"]: p for p in httpx.get(server.url("/system")).json()["plugins"]}
    assert "unknown hook localai_backend" in plugins["typo"]["error"]
    assert "typo" in server.log() and "unknown hook localai_backend" in server.log()
