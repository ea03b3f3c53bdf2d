"""``localai_launch_backend`` as a placement seam: a plugin's handle with several replicas
(``addresses``), its own ``load`` step, ``shared`` (no Free on unload) and ``placement``, and the
model config handed to the hook."""

from __future__ import annotations

import textwrap

import httpx
import openai

from tests.kernel_helpers import lines, wait_until, write_model
from tests.test_plugins import make_plugin, plugin_env

PAIR = textwrap.dedent("""\
    import asyncio, os
    from localai import hookimpl
    from localai.backends.process import LocalProcess, free_port

    class Pair:
        '''Two local echo processes serving one model, as a placement plugin would run replicas.'''
        shared = True

        def __init__(self, spec, model, config):
            self.procs = [LocalProcess(spec, f"127.0.0.1:{free_port()}", model) for _ in range(2)]
            self.addresses = [p.address for p in self.procs]
            self.address = self.addresses[0]
            self.placement = {"hint": config.model_extra.get("placement_hint"),
                              "pids": []}
            self.pid = None

        async def start(self):
            for p in self.procs:
                await p.start()
            self.placement["pids"] = [p.pid for p in self.procs]

        def alive(self):
            return all(p.alive() for p in self.procs)

        async def wait(self):
            waits = [asyncio.ensure_future(p.wait()) for p in self.procs]
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            return done.pop().result()

        async def load(self, load_one):
            with open(os.environ["LP_LOADS"], "a") as f:
                f.write(" ".join(self.addresses) + "\\n")
            for address in self.addresses:
                await load_one(address)

        def describe_exit(self):
            return "; ".join(p.describe_exit() for p in self.procs if not p.alive())

        async def stop(self, grace):
            for p in self.procs:
                await p.stop(grace)

    @hookimpl(tryfirst=True)
    def localai_launch_backend(spec, addr, settings, model, config):
        if config is None or "placement_hint" not in config.model_extra:
            return None
        return Pair(spec, model, config)
    """)


def test_handle_with_replicas_shared_and_placement(tmp_path, echo_backend, localai_server):
    root = tmp_path / "site"
    root.mkdir()
    make_plugin(root, "pair", PAIR)
    models = tmp_path / "models"
    requests, frees, loads = tmp_path / "requests", tmp_path / "frees", tmp_path / "loads"
    write_model(models, "pair-model", options=[f"request_log:{requests}", f"free_log:{frees}"],
                placement_hint="rack-7", template={"use_tokenizer_template": True})
    write_model(models, "plain-model", options=[f"free_log:{frees}"])
    server = localai_server(models, env=plugin_env(root, LP_LOADS=str(loads),
                                                   LOCALAI_EXTERNAL_GRPC_BACKENDS=f"echo:{echo_backend}"))
    sdk = openai.OpenAI(base_url=server.url("/v1"), api_key="x", max_retries=0)
    for i in range(4):
        reply = sdk.chat.completions.create(model="pair-model", messages=[{"role": "user", "content": f"n{i}"}])
        assert reply.choices[0].message.content == f"echo: n{i}"

    entry = next(m for m in httpx.get(server.url("/system")).json()["loaded_models"] if m["id"] == "pair-model")
    assert entry["placement"]["hint"] == "rack-7"  # the hook saw the model config's extra key
    pids = [str(pid) for pid in entry["placement"]["pids"]]
    assert len(entry["addresses"]) == 2 and len(set(pids)) == 2
    assert len(lines(loads)) == 1  # the handle's own load step ran (once)
    served = [line.split()[0] for line in lines(requests)]
    assert sorted(served) == sorted(pids * 2)  # round-robin: two requests each

    # a shared handle: unloading must not Free the model other kernels may still use
    httpx.post(server.url("/backend/shutdown"), json={"model": "pair-model"}).raise_for_status()
    assert lines(frees) == []
    # a plain model (the built-in launcher, which takes no config argument) is still freed
    sdk.completions.create(model="plain-model", prompt="hi")
    httpx.post(server.url("/backend/shutdown"), json={"model": "plain-model"}).raise_for_status()
    wait_until(lambda: len(lines(frees)) == 1, 5)
