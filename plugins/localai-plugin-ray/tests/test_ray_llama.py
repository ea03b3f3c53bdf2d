"""A real model on a Ray node: SmolLM2 (llama-cpp plugin) answers through the openai SDK."""

from __future__ import annotations

import openai
import psutil
from ray_test_helpers import loaded


def test_smollm2_runs_on_a_ray_node(ray_cluster, kernels):
    """The llama-cpp plugin's ``smollm2`` model (no ``ray:`` key: one CPU) is placed on the cluster."""
    first, second = kernels(2)
    sdk = openai.OpenAI(base_url=first.url("/v1"), api_key="unused", max_retries=0, timeout=120)
    reply = sdk.chat.completions.create(model="smollm2", max_tokens=12, temperature=0,
                                        messages=[{"role": "user", "content": "Name a colour."}])
    assert reply.choices[0].message.content.strip()
    assert reply.usage.completion_tokens > 0

    entry = loaded(first, "smollm2")
    placement = entry["placement"][0]
    ray_cluster.name_of(placement["node_id"])  # one of the cluster's nodes
    backend = psutil.Process(placement["pid"])
    assert "localai_plugin_llama_cpp" in " ".join(backend.cmdline())
    assert backend.ppid() not in (first.pid, second.pid)  # a child of the Ray actor, not of a kernel
    assert psutil.Process(backend.ppid()).name().startswith("ray::")

    # the other kernel streams from the same process
    stream = openai.OpenAI(base_url=second.url("/v1"), api_key="unused", max_retries=0, timeout=120)
    chunks = stream.chat.completions.create(model="smollm2", max_tokens=12, temperature=0, stream=True,
                                            messages=[{"role": "user", "content": "Name a colour."}])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text.strip()
    assert loaded(second, "smollm2")["placement"][0]["pid"] == placement["pid"]
