"""End to end: a real ``local-ai run`` server, the diffusers backend and the official openai SDK."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

MODEL_YAML = """\
name: tiny-sd
backend: diffusers
parameters:
  model: {model}
step: 4
diffusers:
  pipeline_type: StableDiffusionPipeline
  scheduler_type: euler_a
known_usecases: [image]
"""


@pytest.fixture
def client(localai_server, tiny_model, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny-sd.yaml").write_text(MODEL_YAML.format(model=tiny_model))
    server = localai_server(models, args=["--threads", "2"], env={"HF_HUB_OFFLINE": "1"})
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=300)


def png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_images_generate(client):
    res = client.images.generate(model="tiny-sd", prompt="a cat", size="64x64", response_format="b64_json")
    (item,) = res.data
    assert png(base64.b64decode(item.b64_json)).size == (64, 64)

    res = client.images.generate(model="tiny-sd", prompt="a cat", size="64x128", response_format="url")
    (item,) = res.data
    assert "/generated-images/" in item.url
    fetched = httpx.get(item.url, timeout=30)
    assert fetched.status_code == 200
    assert png(fetched.content).size == (64, 128)

    res = client.images.generate(model="tiny-sd", prompt="a cat|blurry, dog", n=2, size="64x64",
                                 response_format="b64_json")
    a, b = (base64.b64decode(d.b64_json) for d in res.data)
    assert png(a).size == png(b).size == (64, 64)
    assert a != b  # each image has its own seed


def test_seed_and_negative_prompt_through_the_api(client):
    def gen(prompt, **extra):
        res = client.images.generate(model="tiny-sd", prompt=prompt, size="64x64", response_format="b64_json",
                                     extra_body={"seed": 11, **extra})
        return base64.b64decode(res.data[0].b64_json)

    same = gen("a cat")
    assert gen("a cat") == same
    assert gen("a cat|dog") != same
    assert gen("a cat", step=2) != same


def test_bad_requests_are_400(client):
    for size in ("5000x5000", "abc", "63x64"):
        with pytest.raises(openai.BadRequestError):
            client.images.generate(model="tiny-sd", prompt="a cat", size=size, response_format="b64_json")
    for prompt in ("", "|only negative"):
        with pytest.raises(openai.BadRequestError):
            client.images.generate(model="tiny-sd", prompt=prompt, size="64x64", response_format="b64_json")
    res = client.images.generate(model="tiny-sd", prompt="a cat", size="64x64", response_format="b64_json")
    assert png(base64.b64decode(res.data[0].b64_json)).size == (64, 64)
