"""The kernel never imports model libraries, even with model plugins installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

HEAVY = ["torch", "llama_cpp", "xllamacpp", "numpy", "diffusers", "transformers"]

SCRIPT = textwrap.dedent("""\
    import json, sys
    from localai.app import create_app
    from localai.settings import Settings

    app = create_app(Settings.from_env())
    state = app.extensions["localai"]
    print(json.dumps({
        "plugins": {name: info.error for name, info in state.host.plugins.items()},
        "backends": sorted(state.host.backends),
        "llama": state.host.backend("llama-cpp").name,
        "models": [c.name for c in state.registry.all()],
        "heavy": sorted(m for m in %r if m in sys.modules),
    }))
    """) % (HEAVY,)


def test_creating_the_app_imports_no_model_library(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "gguf.yaml").write_text("name: some-gguf\nbackend: llama\nparameters: {model: x.gguf}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAI_")}
    env["LOCALAI_MODELS_PATH"] = str(models)
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # the llama-cpp plugin is really loaded, and registers its backend; "llama-cpp" names the
    # xllamacpp backend when that plugin is installed too, else llama-cpp-python's
    assert report["plugins"].get("llama-cpp", "missing") is None, report["plugins"]
    assert "llama-cpp-python" in report["backends"]
    has_xllamacpp = "xllamacpp" in report["plugins"]
    assert report["llama"] == ("llama-cpp" if has_xllamacpp else "llama-cpp-python")
    assert "some-gguf" in report["models"]
    assert report["heavy"] == []
