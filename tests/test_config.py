"""Model configs, the registry, templates and settings, in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from localai.backends.options import ALL_GPU_LAYERS, model_options
from localai.default_plugins.external_backends import parse_external
from localai.errors import BadRequest, ConfigError
from localai.gallery.uris import Remotes
from localai.models import templates
from localai.models.config import ModelConfig, resolve_model_file
from localai.models.registry import ModelRegistry
from localai.settings import Settings, parse_duration

VALID = """\
name: chatty
backend: llama
description: a chat model
parameters:
  model: chatty.gguf
  temperature: 0.2
context_size: 1024
stopwords: "</s>"
options: ["dim:4", gpu]
known_usecases: [chat]
template:
  chat: "{{ messages[0].content }}"
"""


def registry_with(tmp_path: Path, files: dict[str, str], plugin_configs=()) -> ModelRegistry:
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    for name, text in files.items():
        (models / name).write_text(text)
    return ModelRegistry(models, plugin_configs)


def test_valid_yaml_is_parsed(tmp_path):
    registry = registry_with(tmp_path, {"chatty.yaml": VALID})
    assert registry.broken == []
    config = registry.get("chatty")
    assert config.backend == "llama" and config.backend_name == "llama-cpp"
    assert config.parameters.model == "chatty.gguf" and config.parameters.temperature == 0.2
    assert config.context_size == 1024
    assert config.stopwords == ["</s>"]
    assert config.options == ["dim:4", "gpu"]
    assert config.known_usecases == ["chat"]
    assert config.template.chat == "{{ messages[0].content }}"
    assert config.source == str(tmp_path / "models" / "chatty.yaml")
    # the LoadModel request carries the resolved file and the options
    options = model_options(config, Settings(models_path=tmp_path / "models"), config.model_file(tmp_path / "models"))
    assert options.ModelFile == str((tmp_path / "models" / "chatty.gguf").resolve())
    assert options.Model == "chatty.gguf" and list(options.Options) == ["dim:4", "gpu"]
    assert options.ContextSize == 1024
    assert options.NGPULayers == ALL_GPU_LAYERS  # no gpu_layers: everything on the GPU, when there is one


@pytest.mark.parametrize("extra, gpu_layers, parallel_options", [
    ({"parallel": 4}, ALL_GPU_LAYERS, ["parallel:4"]),
    ({"parallel": 4, "options": ["parallel: 2"]}, ALL_GPU_LAYERS, ["parallel: 2"]),
    ({"gpu_layers": 0}, 0, []),
    ({"gpu_layers": -1}, ALL_GPU_LAYERS, []),
    ({"gpu_layers": 12, "parallel": 1}, 12, ["parallel:1"]),
])
def test_parallel_slots_and_gpu_layers_reach_the_backend(tmp_path, extra, gpu_layers, parallel_options):
    config = ModelConfig.model_validate({"name": "m", "backend": "llama-cpp", **extra})
    options = model_options(config, Settings(models_path=tmp_path), "/m.gguf")
    assert options.NGPULayers == gpu_layers
    assert [o for o in options.Options if o.startswith("parallel")] == parallel_options


def test_gpu_knobs_reach_the_backend(tmp_path):
    config = ModelConfig.model_validate({"name": "m", "main_gpu": "1", "tensor_split": "3,1", "cache_type_k": "q8_0",
                                         "cache_type_v": "q8_0", "no_kv_offloading": True, "flash_attention": "on"})
    options = model_options(config, Settings(models_path=tmp_path), "/m.gguf")
    assert (options.MainGPU, options.TensorSplit, options.CacheTypeKey, options.CacheTypeValue) == ("1", "3,1", "q8_0", "q8_0")
    assert options.NoKVOffload and options.FlashAttention == "on"


@pytest.mark.parametrize("extra, cuda", [
    ({}, True), ({"cuda": False}, False), ({"diffusers": {"cuda": False}}, False), ({"cuda": True}, True),
])
def test_cuda_is_asked_for_unless_the_config_says_no(tmp_path, extra, cuda):
    config = ModelConfig.model_validate({"name": "m", "backend": "diffusers", **extra})
    assert model_options(config, Settings(models_path=tmp_path), "/m").CUDA is cuda


@pytest.mark.parametrize("bad", [{"parallel": 0}, {"parallel": "many"}, {"gpu_layers": "all"}])
def test_bad_parallel_or_gpu_layers_is_a_config_error(bad):
    with pytest.raises(ValidationError):
        ModelConfig.model_validate({"name": "m", **bad})


def test_list_of_configs_in_one_file(tmp_path):
    registry = registry_with(tmp_path, {"many.yml": "- {name: a, backend: echo}\n- {name: b, backend: echo}\n"})
    assert [c.name for c in registry.all()] == ["a", "b"]
    assert registry.broken == []


def test_broken_configs_are_reported_without_hiding_others(tmp_path):
    registry = registry_with(tmp_path, {
        "good.yaml": "name: good\nbackend: echo\n",
        "syntax.yaml": "name: [unclosed\n",
        "badfield.yaml": "name: badfield\ncontext_size: lots\n",
        "noname.yaml": "backend: echo\n",
        "slash.yaml": "name: a/b\n",
        "scalar.yaml": "just a string\n",
        "mixed.yaml": "- {name: fine}\n- {name: mixedbad, threads: many}\n",
        "notes.txt": "name: ignored\n",
        ".hidden.yaml": "name: hidden\n",
    })
    assert [c.name for c in registry.all()] == ["fine", "good"]
    errors = {Path(b.source).name: b.error for b in registry.broken}
    assert set(errors) == {"syntax.yaml", "badfield.yaml", "noname.yaml", "slash.yaml", "scalar.yaml", "mixed.yaml"}
    assert "cannot read YAML" in errors["syntax.yaml"]
    assert "context_size" in errors["badfield.yaml"]
    assert "name" in errors["noname.yaml"]
    assert "name" in errors["slash.yaml"]
    assert "mapping" in errors["scalar.yaml"]
    assert "threads" in errors["mixed.yaml"]


def test_duplicate_names_keep_the_first_and_report_the_second(tmp_path):
    registry = registry_with(tmp_path, {"a.yaml": "name: twin\nbackend: first\n",
                                        "b.yaml": "name: twin\nbackend: second\n"})
    assert registry.get("twin").backend == "first"
    [broken] = registry.broken
    assert broken.source.endswith("b.yaml")
    assert "duplicate" in broken.error and "a.yaml" in broken.error


def test_directory_config_overrides_plugin_config(tmp_path):
    plugin_configs = [("plug", {"name": "shared", "backend": "from-plugin"}),
                      ("plug", {"name": "only-plugin", "backend": "from-plugin"})]
    registry = registry_with(tmp_path, {"shared.yaml": "name: shared\nbackend: from-dir\n"}, plugin_configs)
    assert registry.broken == []
    assert registry.get("shared").backend == "from-dir"
    assert registry.get("only-plugin").source == "plugin:plug"


def test_pkg_scheme_resolves_inside_an_installed_package(tmp_path):
    path = resolve_model_file("pkg://localai/py.typed", tmp_path)
    assert os.path.isfile(path) and path.endswith(os.path.join("localai", "py.typed"))
    with pytest.raises(FileNotFoundError, match="no_such_pkg_xyz"):
        resolve_model_file("pkg://no_such_pkg_xyz/model.gguf", tmp_path)
    config = ModelConfig(name="p", parameters={"model": "pkg://no_such_pkg_xyz/m.bin"})
    with pytest.raises(FileNotFoundError):
        config.model_file(tmp_path)


def test_relative_absolute_and_home_model_paths(tmp_path, monkeypatch):
    models = tmp_path / "models"
    assert resolve_model_file("sub/m.gguf", models) == str(models.resolve() / "sub" / "m.gguf")
    assert resolve_model_file("/abs/m.gguf", models) == "/abs/m.gguf"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_model_file("~/m.gguf", models) == str(tmp_path / "home" / "m.gguf")
    assert resolve_model_file("", models) == ""
    # a relative models dir is resolved against the working directory
    monkeypatch.chdir(tmp_path)
    assert resolve_model_file("m.gguf", Path("rel")) == str(tmp_path / "rel" / "m.gguf")


@pytest.mark.parametrize("backend, model, expected", [
    ("llama", "x", "llama-cpp"),
    ("go-llama", "x", "llama-cpp"),
    (" LLaMA.cpp ", "x", "llama-cpp"),
    ("sentencetransformers", "x", "sentence-transformers"),
    ("", "model.gguf", "llama-cpp"),
    ("", "model.bin", ""),
    ("echo", "model.gguf", "echo"),
    ("my-backend", "x", "my-backend"),
])
def test_backend_alias_table(backend, model, expected):
    assert ModelConfig(name="m", backend=backend, parameters={"model": model}).backend_name == expected


def test_registry_picks_up_new_changed_and_removed_files(tmp_path):
    registry = registry_with(tmp_path, {"a.yaml": "name: a\n"})
    models = tmp_path / "models"
    assert registry.get("late") is None
    (models / "late.yaml").write_text("name: late\nbackend: echo\n")
    assert registry.get("late").backend == "echo"  # get() re-reads once for an unknown name
    (models / "more.yaml").write_text("name: more\n")
    assert [c.name for c in registry.all()] == ["a", "late", "more"]
    (models / "late.yaml").write_text("name: late\nbackend: echo-changed\n")
    assert registry.refresh() is True
    assert registry.get("late").backend == "echo-changed"
    assert registry.refresh() is False  # unchanged directory: no re-read
    (models / "more.yaml").unlink()
    assert [c.name for c in registry.all()] == ["a", "late"]


def test_missing_models_dir_is_empty_not_fatal(tmp_path):
    registry = ModelRegistry(tmp_path / "nope")
    assert registry.all() == [] and registry.broken == []


def test_chat_template_inline_and_from_tmpl_file(tmp_path):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    inline = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    assert templates.render_chat(inline, tmp_path, messages) == "<system>be brief\n<user>hi\n<assistant>"
    (tmp_path / "mychat.tmpl").write_text("[{{ system_prompt }}] {{ messages[-1].content }}")
    assert templates.render_chat("mychat", tmp_path, messages, system_prompt="S") == "[S] hi"
    # a name without a .tmpl file is taken as literal template text
    assert templates.render_chat("missing", tmp_path, messages) == "missing"
    assert templates.render("Q: {{ input }}", tmp_path, input="why") == "Q: why"


def test_broken_or_unsafe_template_is_a_bad_request(tmp_path):
    with pytest.raises(BadRequest, match="template"):
        templates.render_chat("{% for %}", tmp_path, [])
    with pytest.raises(BadRequest):  # the sandbox refuses attribute tricks
        templates.render("{{ ''.__class__.__mro__ }}", tmp_path)


def test_plain_chat_prompt():
    prompt = templates.plain_chat_prompt([{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}])
    assert prompt == "user: hi\nassistant: \nassistant:"


@pytest.mark.parametrize("text, seconds", [
    ("15m", 900.0), ("30s", 30.0), ("2h", 7200.0), ("500ms", 0.5), ("1.5s", 1.5), ("7", 7.0), (3, 3.0),
    (" 2M ", 120.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_defaults_and_errors():
    assert parse_duration(None, 5.0) == 5.0
    assert parse_duration("", 4.0) == 4.0
    with pytest.raises(ValueError):
        parse_duration("soon")


ENV_NAMES = ["LOCALAI_MODELS_PATH", "MODELS_PATH", "LOCALAI_SINGLE_ACTIVE_BACKEND", "LOCALAI_MAX_ACTIVE_BACKENDS",
             "LOCALAI_EXTERNAL_GRPC_BACKENDS", "LOCALAI_WATCHDOG_IDLE", "LOCALAI_WATCHDOG_IDLE_TIMEOUT",
             "LOCALAI_WATCHDOG_INTERVAL", "LOCALAI_ADDRESS", "ADDRESS", "LOCALAI_LOAD_PLUGINS",
             "LOCALAI_DISABLE_PLUGINS", "LOCALAI_STRICT_PLUGINS", "LOCALAI_BACKEND_HEALTH_TIMEOUT", "LOCALAI_THREADS"]


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_settings_defaults(clean_env):
    settings = Settings.from_env()
    assert settings.models_path == Path("models")
    assert settings.max_loaded == 0 and settings.idle_timeout == 0.0
    assert settings.load_plugins is None and settings.disable_plugins == []
    assert settings.host_port == ("127.0.0.1", 8080)


def test_settings_from_localai_env_names(clean_env):
    env = {
        "LOCALAI_MODELS_PATH": "/srv/models",
        "LOCALAI_SINGLE_ACTIVE_BACKEND": "true",
        "LOCALAI_EXTERNAL_GRPC_BACKENDS": "a:127.0.0.1:9000, b:/opt/b/run.sh",
        "LOCALAI_WATCHDOG_IDLE": "true",
        "LOCALAI_WATCHDOG_IDLE_TIMEOUT": "1s",
        "LOCALAI_WATCHDOG_INTERVAL": "200ms",
        "LOCALAI_ADDRESS": ":9090",
        "LOCALAI_LOAD_PLUGINS": "x,y",
        "LOCALAI_DISABLE_PLUGINS": "z",
        "LOCALAI_STRICT_PLUGINS": "1",
        "LOCALAI_BACKEND_HEALTH_TIMEOUT": "2m",
        "LOCALAI_THREADS": "3",
    }
    for key, value in env.items():
        clean_env.setenv(key, value)
    settings = Settings.from_env()
    assert settings.models_path == Path("/srv/models")
    assert settings.single_active_backend is True and settings.max_loaded == 1
    assert settings.external_grpc_backends == ["a:127.0.0.1:9000", "b:/opt/b/run.sh"]
    assert settings.idle_timeout == 1.0 and settings.watchdog_interval == 0.2
    assert settings.host_port == ("0.0.0.0", 9090)
    assert settings.load_plugins == ["x", "y"] and settings.disable_plugins == ["z"]
    assert settings.strict_plugins is True
    assert settings.health_timeout == 120.0 and settings.threads == 3
    # explicit overrides (CLI flags) beat the environment
    assert Settings.from_env(models_path=Path("/other")).models_path == Path("/other")


REMOTE_ENV = {
    "LOCALAI_GALLERIES": '[{"name": "g", "url": "file:///srv/g.yaml"}]',
    "LOCALAI_INSECURE_REGISTRIES": " registry.lan:5000, 10.0.0.5 ",
    "HF_ENDPOINT": "hf-mirror.example/",
    "HF_TOKEN": "hf_operator_secret",
    "LOCALAI_FORCE_META_BACKEND_CAPABILITY": " nvidia-cuda-12 ",
    "LOCALAI_FORCE_META_BACKEND_CAPABILITY_RUN_FILE": "/srv/capability",
    "LOCALAI_GRPC_AUTH_TOKEN": "grpc_operator_secret",
}


def test_settings_read_the_gallery_and_remote_names(monkeypatch):
    """The gallery's, the downloader's and the remote backends' environment names are read by
    Settings (the kernel's only reader) and handed down; the secrets stay out of its repr."""
    for name in [*REMOTE_ENV, "GALLERIES", "HF_MIRROR"]:
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert settings.galleries is None and settings.insecure_registries == []
    assert Remotes.of(settings) == Remotes("https://huggingface.co", "", ())
    assert settings.force_meta_backend_capability == "" and settings.grpc_auth_token == ""
    assert settings.force_meta_backend_capability_run_file == "/run/localai/capability"
    for key, value in REMOTE_ENV.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    assert settings.galleries == REMOTE_ENV["LOCALAI_GALLERIES"]
    assert Remotes.of(settings) == Remotes("https://hf-mirror.example", "hf_operator_secret",
                                           ("registry.lan:5000", "10.0.0.5"))
    assert settings.force_meta_backend_capability == "nvidia-cuda-12"
    assert settings.force_meta_backend_capability_run_file == "/srv/capability"
    assert settings.grpc_auth_token == "grpc_operator_secret"
    assert "secret" not in repr(settings) and "secret" not in repr(Remotes.of(settings))
    for key in ("LOCALAI_GALLERIES", "HF_ENDPOINT"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("GALLERIES", "[]")
    monkeypatch.setenv("HF_MIRROR", "https://mirror.example")
    settings = Settings.from_env()
    assert settings.galleries == "[]" and Remotes.of(settings).hf_endpoint == "https://mirror.example"


def test_settings_legacy_names_and_idle_default(clean_env):
    clean_env.setenv("MODELS_PATH", "/legacy")
    clean_env.setenv("LOCALAI_WATCHDOG_IDLE", "yes")
    clean_env.setenv("LOCALAI_MAX_ACTIVE_BACKENDS", "2")
    settings = Settings.from_env()
    assert settings.models_path == Path("/legacy")
    assert settings.idle_timeout == 15 * 60
    assert settings.max_loaded == 2


def test_external_backend_entries(tmp_path):
    remote = parse_external("ext:127.0.0.1:9000")
    assert remote.name == "ext" and remote.address == "127.0.0.1:9000" and not remote.managed
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    local = parse_external(f"loc:{script}")
    assert local.managed and local.command("127.0.0.1:1") == [str(script), "--addr", "127.0.0.1:1"]
    assert os.access(script, os.X_OK)
    for bad in ("noseparator", "x:", "x:host", f"x:{tmp_path}/missing.sh"):
        with pytest.raises(ConfigError):
            parse_external(bad)


def test_disable_webui_removes_the_ui_routes(monkeypatch, tmp_path):
    from localai.app import create_app
    from localai.settings import Settings

    def ui_rules(app):
        return [r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/ui")]

    monkeypatch.setenv("LOCALAI_BACKENDS_PATH", str(tmp_path / "b"))
    assert ui_rules(create_app(Settings.from_env(models_path=tmp_path)))
    monkeypatch.setenv("LOCALAI_DISABLE_WEBUI", "true")
    assert ui_rules(create_app(Settings.from_env(models_path=tmp_path))) == []
