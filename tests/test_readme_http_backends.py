"""The README's "HTTP backends" section says what the code does: its YAML examples are valid model
configs that the HTTP backend reads as described, it names exactly the operator-only ``proxy``
fields, and a config from outside (``/models/apply``, a gallery) that sets them is refused.
(tests/test_http_backend.py runs both kinds of HTTP backend for real.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from localai.backends.http_upstream import UpstreamOptions, is_http_model
from localai.models.config import ModelConfig
from localai.trust import OPERATOR_ONLY_PROXY, NotAllowed, check_config

README = Path(__file__).resolve().parents[1] / "README.md"


def section() -> str:
    text = README.read_text()
    assert "### HTTP backends" in text
    return text.split("### HTTP backends", 1)[1].split("\n## ", 1)[0]


def examples() -> list[dict]:
    return [yaml.safe_load(block) for block in re.findall(r"^```yaml\n(.*?)^```$", section(), re.S | re.M)]


def test_two_examples_an_upstream_and_a_supervised_command():
    upstream, supervised = examples()
    assert upstream["proxy"]["upstream_url"] and "command" not in upstream["proxy"]
    assert supervised["proxy"]["command"] and supervised["proxy"]["ready_url"]


def test_the_upstream_example_reads_as_documented():
    config = ModelConfig.model_validate(examples()[0])
    assert is_http_model(config)
    options = UpstreamOptions.from_config(config).with_port(0)
    assert options.upstream_url == "http://127.0.0.1:9000/v1" and not options.command
    assert options.upstream_model == "Qwen2.5-7B-Instruct" and options.api_key_env == "UPSTREAM_API_KEY"
    assert options.ready_url == "http://127.0.0.1:9000/v1/models"  # the documented default


def test_the_supervised_example_reads_as_documented():
    config = ModelConfig.model_validate(examples()[1])
    options = UpstreamOptions.from_config(config).with_port(4321)
    assert options.command[0] == "llama-server" and options.command[-2:] == ["--port", "4321"]
    assert options.ready_url == "http://127.0.0.1:4321/health"
    assert options.upstream_url == "http://127.0.0.1:4321/v1"  # the documented default


def test_the_operator_only_fields_are_the_ones_the_code_guards():
    named = set(re.findall(r"`proxy\.(\w+)`", section()))
    assert named == set(OPERATOR_ONLY_PROXY), named
    assert "SECURITY.md" in section()


@pytest.mark.parametrize("index", [0, 1])
def test_the_examples_are_refused_from_outside(index):
    with pytest.raises(NotAllowed, match=r"proxy\.\w+ is not allowed here"):
        check_config(examples()[index], "/models/apply")
