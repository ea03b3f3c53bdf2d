"""The diffusers backend over real gRPC with the tiny random-weight pipeline."""

from __future__ import annotations

import grpc
import pytest
from PIL import Image

from localai.proto import backend_pb2 as pb


def generate(stub, dst, **kw):
    kw.setdefault("positive_prompt", "a cat")
    kw.setdefault("width", 64)
    kw.setdefault("height", 64)
    kw.setdefault("step", 4)
    res = stub.GenerateImage(pb.GenerateImageRequest(dst=str(dst), **kw), timeout=120)
    assert res.success, res.message
    return dst.read_bytes()


def pixels(path):
    with Image.open(path) as img:
        return img.size, img.mode, img.tobytes()


def invalid(stub, **kw):
    with pytest.raises(grpc.RpcError) as err:
        stub.GenerateImage(pb.GenerateImageRequest(**kw), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details()


def test_calls_before_load_fail_cleanly(backend, tmp_path):
    with pytest.raises(grpc.RpcError) as err:
        backend.GenerateImage(pb.GenerateImageRequest(positive_prompt="x", dst=str(tmp_path / "a.png")))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.UNINITIALIZED


def test_load_missing_model_is_a_clear_failure(backend):
    res = backend.LoadModel(pb.ModelOptions(Model="nope", ModelPath="/nonexistent"))
    assert not res.success and "model not found" in res.message


def test_load_bad_model_dir_is_a_clear_failure(backend, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = backend.LoadModel(pb.ModelOptions(ModelFile=str(empty)))
    assert not res.success and "model_index.json" in res.message
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}')
    res = backend.LoadModel(pb.ModelOptions(ModelFile=str(broken)))
    assert not res.success and "failed to load" in res.message
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"\0" * 64)
    res = backend.LoadModel(pb.ModelOptions(ModelFile=str(ckpt)))
    assert not res.success and "failed to load" in res.message
    other = tmp_path / "model.txt"
    other.write_text("x")
    res = backend.LoadModel(pb.ModelOptions(ModelFile=str(other)))
    assert not res.success and "unsupported model file" in res.message
    assert backend.Health(pb.HealthMessage()).message == b"OK"


def test_load_unknown_pipeline_or_scheduler_fails(backend, tiny_model):
    res = backend.LoadModel(pb.ModelOptions(ModelFile=str(tiny_model), PipelineType="NoSuchPipeline"))
    assert not res.success and "unknown pipeline_type" in res.message
    res = backend.LoadModel(pb.ModelOptions(ModelFile=str(tiny_model), SchedulerType="bogus"))
    assert not res.success and "unknown scheduler_type" in res.message


@pytest.mark.parametrize("scheduler,cls", [
    ("euler_a", "EulerAncestralDiscreteScheduler"), ("k_dpmpp_2m", "DPMSolverMultistepScheduler"),
    ("unipc", "UniPCMultistepScheduler"), ("lms", "LMSDiscreteScheduler"), ("pndm", "PNDMScheduler"),
    ("DDIMScheduler", "DDIMScheduler"),
])
def test_scheduler_types_load_and_generate(backend, tiny_model, tmp_path, scheduler, cls):
    res = backend.LoadModel(pb.ModelOptions(
        ModelFile=str(tiny_model), PipelineType="StableDiffusionPipeline", SchedulerType=scheduler))
    assert res.success, res.message
    assert f"StableDiffusionPipeline, {cls}," in res.message
    generate(backend, tmp_path / "s.png", seed=3)
    assert pixels(tmp_path / "s.png")[0] == (64, 64)


def test_free_unloads(backend, tiny_model, tmp_path):
    assert backend.LoadModel(pb.ModelOptions(ModelFile=str(tiny_model))).success
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.READY
    assert backend.Free(pb.HealthMessage()).success
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.UNINITIALIZED
    with pytest.raises(grpc.RpcError) as err:
        backend.GenerateImage(pb.GenerateImageRequest(positive_prompt="x", dst=str(tmp_path / "a.png")))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("width,height", [(64, 64), (64, 128), (96, 32)])
def test_generates_png_of_requested_size(loaded, tmp_path, width, height):
    dst = tmp_path / "out" / "img.png"  # the folder is created
    data = generate(loaded, dst, width=width, height=height, seed=1)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    size, mode, _ = pixels(dst)
    assert size == (width, height) and mode == "RGB"
    assert [p.name for p in dst.parent.iterdir()] == ["img.png"]  # no temp file left


def test_seed_is_deterministic(loaded, tmp_path):
    a = generate(loaded, tmp_path / "a.png", seed=42)
    b = generate(loaded, tmp_path / "b.png", seed=42)
    generate(loaded, tmp_path / "c.png", seed=43)
    assert a == b
    assert pixels(tmp_path / "a.png")[2] != pixels(tmp_path / "c.png")[2]


def test_negative_prompt_steps_and_clip_skip_change_the_image(loaded, tmp_path):
    base = generate(loaded, tmp_path / "a.png", seed=5)
    assert generate(loaded, tmp_path / "n.png", seed=5, negative_prompt="dog") != base
    assert generate(loaded, tmp_path / "s.png", seed=5, step=2) != base
    assert generate(loaded, tmp_path / "c.png", seed=5, CLIPSkip=1) != base


def test_default_steps_come_from_options(loaded, tmp_path):
    res = loaded.GenerateImage(pb.GenerateImageRequest(
        positive_prompt="a cat", width=64, height=64, seed=1, dst=str(tmp_path / "d.png")))
    assert res.success and "4 steps" in res.message


def test_img2img(loaded, tmp_path):
    src = tmp_path / "src.png"
    Image.new("RGB", (80, 48), (200, 30, 30)).save(src)
    a = generate(loaded, tmp_path / "a.png", src=str(src), seed=7, width=64, height=64)
    b = generate(loaded, tmp_path / "b.png", src=str(src), seed=7, width=64, height=64)
    assert a == b and pixels(tmp_path / "a.png")[0] == (64, 64)
    txt = generate(loaded, tmp_path / "t.png", seed=7)
    assert txt != a


def test_invalid_requests_then_healthy(loaded, tmp_path):
    dst = str(tmp_path / "x.png")
    assert "size must be" in invalid(loaded, positive_prompt="a cat", width=63, height=64, dst=dst)
    assert "size must be" in invalid(loaded, positive_prompt="a cat", width=4096, height=4096, dst=dst)
    assert "size must be" in invalid(loaded, positive_prompt="a cat", width=-8, height=64, dst=dst)
    assert "prompt" in invalid(loaded, positive_prompt="  ", width=64, height=64, dst=dst)
    assert "step" in invalid(loaded, positive_prompt="a cat", width=64, height=64, step=500, dst=dst)
    assert "dst" in invalid(loaded, positive_prompt="a cat", width=64, height=64)
    assert "src" in invalid(loaded, positive_prompt="a cat", width=64, height=64, dst=dst,
                            src=str(tmp_path / "missing.png"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert "src" in invalid(loaded, positive_prompt="a cat", width=64, height=64, dst=dst, src=str(bad))
    assert not (tmp_path / "x.png").exists()
    assert loaded.Health(pb.HealthMessage(), timeout=5).message == b"OK"
    generate(loaded, tmp_path / "ok.png", seed=1)


def test_model_identity_and_status(loaded, tmp_path):
    with pytest.raises(grpc.RpcError) as err:
        loaded.GenerateImage(pb.GenerateImageRequest(positive_prompt="x", dst=str(tmp_path / "a.png"),
                                                     ModelIdentity="other"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "model identity mismatch" in err.value.details()
    generate(loaded, tmp_path / "a.png", ModelIdentity="tiny-sd")
    st = loaded.Status(pb.HealthMessage())
    assert st.state == pb.StatusResponse.READY and st.memory.total > 0


def test_img2img_pipeline_types(backend, tiny_model, tmp_path):
    src = tmp_path / "src.png"
    Image.new("RGB", (64, 64), (20, 120, 220)).save(src)
    for opts in (dict(IMG2IMG=True), dict(PipelineType="StableDiffusionImg2ImgPipeline"),
                 dict(PipelineType="AutoPipelineForText2Image")):
        res = backend.LoadModel(pb.ModelOptions(ModelFile=str(tiny_model), **opts))
        assert res.success, res.message
        generate(backend, tmp_path / "i.png", src=str(src), seed=2)
        generate(backend, tmp_path / "t.png", seed=2, width=32, height=96)
        assert pixels(tmp_path / "i.png")[0] == (64, 64) and pixels(tmp_path / "t.png")[0] == (32, 96)
    # too few steps left after strength 0.75: a clear INVALID_ARGUMENT from diffusers' checks
    assert "step" in invalid(backend, positive_prompt="a cat", width=64, height=64, step=1,
                             src=str(src), dst=str(tmp_path / "x.png"))


def test_enable_parameters_filters_pipeline_arguments(backend, tiny_model, tmp_path):
    assert backend.LoadModel(pb.ModelOptions(ModelFile=str(tiny_model))).success
    # only num_inference_steps passes: the size falls back to the pipeline's own (64x64 here)
    generate(backend, tmp_path / "e.png", width=128, height=32, EnableParameters="num_inference_steps")
    assert pixels(tmp_path / "e.png")[0] == (64, 64)


def test_cuda_flag(backend, tiny_model, tmp_path):
    import subprocess
    import sys

    has_cuda = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                              capture_output=True, text=True, check=True).stdout.strip() == "True"
    res = backend.LoadModel(pb.ModelOptions(ModelFile=str(tiny_model), CUDA=True))
    assert res.success, res.message
    assert ("on cuda" if has_cuda else "on cpu") in res.message
    a = generate(backend, tmp_path / "a.png", seed=9)
    assert a == generate(backend, tmp_path / "b.png", seed=9)
    assert pixels(tmp_path / "a.png")[0] == (64, 64)
    assert backend.Status(pb.HealthMessage()).state == pb.StatusResponse.READY
    assert backend.Free(pb.HealthMessage()).success


def test_cancelled_request_stops_early(backend, tiny_model, tmp_path):
    import time

    assert backend.LoadModel(pb.ModelOptions(ModelFile=str(tiny_model))).success
    with pytest.raises(grpc.RpcError) as err:
        backend.GenerateImage(pb.GenerateImageRequest(positive_prompt="a cat", width=256, height=256, step=150,
                                                      seed=1, dst=str(tmp_path / "long.png")), timeout=1.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    t0 = time.monotonic()
    generate(backend, tmp_path / "next.png", seed=1)
    assert time.monotonic() - t0 < 30  # the 150-step run would take minutes
    assert not (tmp_path / "long.png").exists()
