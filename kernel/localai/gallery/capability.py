"""Hardware capability: which concrete build of a meta backend fits this machine."""

from __future__ import annotations

import glob
import os
import platform
import shutil

from ..errors import NotFound
from ..settings import CAPABILITY_RUN_FILE


def _has_nvidia() -> bool:
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def _has_amd() -> bool:
    return os.path.exists("/dev/kfd") or shutil.which("rocm-smi") is not None


def _has_intel_gpu() -> bool:
    if shutil.which("xpu-smi"):
        return True
    for vendor in glob.glob("/sys/class/drm/card*/device/vendor"):
        try:
            if open(vendor).read().strip() == "0x8086" and os.path.exists("/dev/dri/renderD128") and \
                    glob.glob("/sys/class/drm/card*/device/driver/module/drivers/pci:xe"):
                return True
        except OSError:
            continue
    return False


def detect_capability(forced: str = "", run_file: str = CAPABILITY_RUN_FILE) -> str:
    """LocalAI's capability string for this host: ``forced``, from ``run_file``, or detected (the
    operator's ``LOCALAI_FORCE_META_BACKEND_CAPABILITY[_RUN_FILE]``, from Settings)."""
    if forced.strip():
        return forced.strip()
    try:
        value = open(run_file).read().strip()
        if value:
            return value
    except OSError:
        pass
    system, machine = platform.system().lower(), platform.machine().lower()
    if system == "darwin":
        return "metal" if machine in ("arm64", "aarch64") else "darwin-x86"
    if _has_nvidia():
        if machine in ("arm64", "aarch64"):
            return "nvidia-l4t"
        for major in ("13", "12"):
            if os.path.isdir(f"/usr/local/cuda-{major}"):
                return f"nvidia-cuda-{major}"
        return "nvidia"
    if _has_amd():
        return "amd"
    if _has_intel_gpu():
        return "intel"
    return "default"


def resolve_meta(name: str, capabilities: dict[str, str], capability: str) -> str:
    """The concrete backend for ``capability``: exact key, its vendor prefix, ``default``, ``cpu``."""
    candidates = [capability]
    if "-" in capability:
        candidates.append(capability.split("-", 1)[0])  # nvidia-cuda-12 -> nvidia
    candidates += ["default", "cpu"]
    for key in candidates:
        if capabilities.get(key):
            return capabilities[key]
    raise NotFound(
        f"meta backend {name!r} has no build for capability {capability!r} "
        f"(it offers: {', '.join(sorted(capabilities)) or 'none'})",
        code="backend_not_found",
    )
