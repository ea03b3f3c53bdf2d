"""The hooks module stays import-light and describes the backend."""

import subprocess
import sys

from localai_plugin_diffusers import plugin


def test_plugin_import_does_not_load_torch():
    code = (
        "import sys, localai_plugin_diffusers.plugin as p; p.localai_backends(); "
        "bad = [m for m in ('torch', 'diffusers', 'transformers', 'PIL') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_server_import_does_not_load_torch():
    code = (
        "import sys, localai_plugin_diffusers.servicer; "
        "bad = [m for m in ('torch', 'diffusers') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_backend_spec():
    (spec,) = plugin.localai_backends()
    assert spec.name == "diffusers"
    assert spec.argv[:3] == (sys.executable, "-m", "localai_plugin_diffusers")
    assert spec.command("127.0.0.1:1")[-2:] == ["--addr", "127.0.0.1:1"]
    assert spec.usecases == ("image",)
