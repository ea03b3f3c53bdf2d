"""The ``ray:`` model options and the sharing fingerprint (no cluster needed)."""

from __future__ import annotations

import pytest

from localai.backends.spec import BackendSpec
from localai.errors import LoadError
from localai.models.config import ModelConfig
from localai_plugin_ray.options import RayOptions, fingerprint


def config(**extra) -> ModelConfig:
    return ModelConfig(name="m", backend="echo", parameters={"model": "f.gguf"}, **extra)


def test_defaults_and_opt_out():
    assert RayOptions.from_config(config()).actor_options() == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert RayOptions.from_config(config(ray=True)).enabled
    assert not RayOptions.from_config(config(ray=False)).enabled


def test_resources_and_replicas():
    options = RayOptions.from_config(config(ray={"num_gpus": 0.5, "memory": 2**30, "resources": {"zone": 1},
                                                 "replicas": 3}))
    assert options.actor_options() == {"num_cpus": 1.0, "num_gpus": 0.5, "memory": 2**30,
                                       "resources": {"zone": 1.0}, "scheduling_strategy": "SPREAD"}
    assert options.describe() == "num_cpus=1, num_gpus=0.5, memory=1073741824, zone=1"


@pytest.mark.parametrize("ray, problem", [
    ({"num_gpu": 1}, "ray.num_gpu: Extra inputs are not permitted"),
    ({"replicas": 0}, "ray.replicas: Input should be greater than or equal to 1"),
    ({"num_cpus": -1}, "ray.num_cpus"),
    ("lots", "'ray' must be a mapping or false"),
])
def test_invalid_options_name_the_key(ray, problem):
    with pytest.raises(LoadError, match="model 'm'") as caught:
        RayOptions.from_config(config(ray=ray))
    assert problem in str(caught.value)


def test_fingerprint_changes_with_the_model_config():
    spec = BackendSpec(name="echo", argv=("/bin/run.sh", "--addr", "{addr}"))
    base = fingerprint(spec, config(), "/models/f.gguf")
    assert base == fingerprint(spec, config(), "/models/f.gguf")
    assert base != fingerprint(spec, config(context_size=4096), "/models/f.gguf")
    assert base != fingerprint(spec, config(), "/models/g.gguf")
    assert base != fingerprint(BackendSpec(name="other", argv=spec.argv), config(), "/models/f.gguf")
