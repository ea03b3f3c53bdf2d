"""``BackendSpec`` and ``package_path`` under the name plugins have always imported; they live in
:mod:`localai.backend_spec`, beside the hook specs, below every layer of the kernel."""

from ..backend_spec import BackendSpec, package_path

__all__ = ["BackendSpec", "package_path"]
