"""llama-cpp-python as scripts/install-llama-cpp-python builds it runs on any x86-64 CPU.

On an Intel CPU with AMX, pip's default (-march=native) compiles in ggml's AMX matmul, whose
tile configuration is broken in the llama.cpp this version vendors: SIGILL on the first prompt
of more than a token. These tests prove the fix on a machine without AMX too: the CMake
arguments an AMX CPU gets compile no tile instruction (while the AMX options that
-march=native turns on there do), the library the tests use has none, and a multi-token
prompt decodes.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest
from localai.proto import backend_pb2 as pb

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "install-llama-cpp-python"
AMX = re.compile(r"\b(tilezero|tileloadd|tileloaddt1|tilestored|ldtilecfg|sttilecfg|tilerelease|tdp[a-z0-9]+)\b")
# /proc/cpuinfo flags of an Intel Xeon (Sapphire Rapids) VM with AMX
SAPPHIRE_RAPIDS = ("fpu sse sse2 ssse3 fma cx16 sse4_1 sse4_2 popcnt avx f16c avx2 bmi1 bmi2 avx512f avx512dq "
                   "avx512ifma avx512cd avx512bw avx512vl avx_vnni avx512_bf16 avx512vbmi avx512_vbmi2 "
                   "avx512_vnni avx512_bitalg avx512_vpopcntdq amx_bf16 avx512_fp16 amx_tile amx_int8")
HASWELL = "fpu sse sse2 ssse3 fma cx16 sse4_1 sse4_2 popcnt avx f16c avx2 bmi1 bmi2"
NO_CONFIGURE = ["-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=OFF",
                "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_COMMON=OFF", "-DLLAMA_CURL=OFF"]


def cmake_args(tmp_path: Path, flags: str, arch: str = "x86_64") -> list[str]:
    cpuinfo = tmp_path / f"cpuinfo-{abs(hash(flags))}"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    env = {**os.environ, "LOCALAI_CPUINFO": str(cpuinfo), "LOCALAI_ARCH": arch}
    out = subprocess.run([str(SCRIPT), "--cmake-args"], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def disassemble(path: Path) -> str:
    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(path)], capture_output=True, text=True,
                         check=True).stdout
    assert "file format elf64-x86-64" in asm, asm[:500]
    return asm


def amx_instructions(path: Path) -> set[str]:
    return set(AMX.findall(disassemble(path)))


def test_an_amx_cpu_gets_its_instruction_sets_and_no_amx(tmp_path):
    args = cmake_args(tmp_path, SAPPHIRE_RAPIDS)
    assert "-DGGML_NATIVE=OFF" in args  # no -march=native, which brings AMX on such a CPU
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(args)
    assert {"-DGGML_AVX2=ON", "-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON", "-DGGML_AVX512_BF16=ON",
            "-DGGML_AVX_VNNI=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON"} <= set(args)


def test_other_cpus_get_only_what_they_have(tmp_path):
    args = cmake_args(tmp_path, HASWELL)
    assert {"-DGGML_AVX2=ON", "-DGGML_AVX512=OFF", "-DGGML_AVX512_VNNI=OFF", "-DGGML_AMX_INT8=OFF"} <= set(args)
    assert cmake_args(tmp_path, HASWELL, arch="aarch64") == []  # no AMX there: llama.cpp's own defaults


@pytest.fixture(scope="module")
def llama_cpp_source(tmp_path_factory) -> Path:
    """The llama.cpp that the installed llama-cpp-python vendors, from the sdist the script built it from."""
    version = importlib.metadata.version("llama-cpp-python")
    sdist = subprocess.run([str(SCRIPT), "--sdist", sys.executable], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert sdist.endswith(f"llama_cpp_python-{version}.tar.gz"), sdist
    where = tmp_path_factory.mktemp("sdist")
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    with tarfile.open(sdist) as tar:
        tar.extractall(where, members=[m for m in tar.getmembers() if m.name.startswith(prefix)], filter="data")
    return where / prefix


def compile_amx_matmul(source: Path, build: Path, args: list[str]) -> Path:
    """Configure llama.cpp with ``args`` and compile only ggml's AMX matmul (amx/mmq.cpp)."""
    cmake = shutil.which("cmake")
    assert cmake, "cmake is needed (the plugin's test extra installs it)"
    subprocess.run([cmake, "-S", str(source), "-B", str(build), *args, *NO_CONFIGURE], check=True,
                   capture_output=True)
    subprocess.run(["make", "-C", str(build / "ggml" / "src"), "ggml-cpu/amx/mmq.o"], check=True, capture_output=True)
    [obj] = (build / "ggml" / "src").rglob("amx/mmq.cpp.o")
    return obj


@pytest.mark.timeout(900)  # two cmake configures and one heavy C++ file, on a busy 2-core machine
def test_the_amx_cpu_build_compiles_no_tile_instruction(llama_cpp_source, tmp_path):
    ours = cmake_args(tmp_path, SAPPHIRE_RAPIDS)
    assert amx_instructions(compile_amx_matmul(llama_cpp_source, tmp_path / "ours", ours)) == set()
    # what -march=native turns on for that CPU (its AMX options): the broken tile code is there
    native_like = [a.replace("=OFF", "=ON") if "AMX" in a else a for a in ours]
    found = amx_instructions(compile_amx_matmul(llama_cpp_source, tmp_path / "native", native_like))
    assert {"ldtilecfg", "tilezero", "tileloadd"} <= found


def test_the_installed_library_has_no_amx_code():
    import llama_cpp

    libs = sorted(Path(llama_cpp.__file__).parent.glob("lib/libggml-cpu*.so*"))
    assert libs, "libggml-cpu not found next to llama_cpp"
    for lib in libs:
        asm = disassemble(lib)
        assert "vfmadd" in asm  # the matmul code is there, built with the CPU's own instruction sets
        assert set(AMX.findall(asm)) == set(), lib
    assert b"AMX" not in llama_cpp.llama_print_system_info()


def test_a_multi_token_prompt_decodes(loaded):
    """The AMX path runs for batches of several tokens: a one-token prompt hides it."""
    prompt = "Summarise in one sentence: " + " ".join(["the quick brown fox jumps over the lazy dog"] * 12)
    assert len(loaded.TokenizeString(pb.PredictOptions(Prompt=prompt)).tokens) > 64
    reply = loaded.Predict(pb.PredictOptions(Prompt=prompt, Tokens=8, Temperature=0))
    assert reply.message and reply.prompt_tokens > 64
    assert loaded.Health(pb.HealthMessage()).message == b"OK"


def test_a_sigill_mid_stream_names_the_rebuild(localai_server, tmp_path, gguf):
    """A real llama-cpp-python backend killed by SIGILL: the stream's error says what to do."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "lcp.yaml").write_text(f"name: lcp\nbackend: llama-cpp-python\ncontext_size: 512\n"
                                     f"parameters:\n  model: {gguf}\n")
    server = localai_server(models, env={"LOCALAI_GALLERIES": "[]", "LOCALAI_BACKEND_GALLERIES": "[]"})
    body = {"model": "lcp", "stream": True, "max_tokens": 400, "temperature": 0,
            "messages": [{"role": "user", "content": "Write a long story about a dragon."}]}
    with httpx.stream("POST", server.url("/v1/chat/completions"), json=body, timeout=120) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: {"))  # decoding has begun
        loaded = httpx.get(server.url("/system"), timeout=10).json()["loaded_models"]
        os.kill(next(m["pid"] for m in loaded if m["id"] == "lcp"), signal.SIGILL)
        rest = "\n".join(lines)
    assert "(SIGILL)" in rest and "scripts/install-llama-cpp-python" in rest, rest[-2000:]
