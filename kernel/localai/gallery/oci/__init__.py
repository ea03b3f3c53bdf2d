"""OCI images for backends, by concern:

- :mod:`.reference` — image references, which registries may be spoken to over plain http;
- :mod:`.registry` — the registry client (oras-py with timeouts and short retries), manifests,
  image indexes and the host platform's image, remote digests;
- :mod:`.pull` — the install transaction: every layer downloaded and verified before any is applied;
- :mod:`.layers` — layer safety: applying a layer without writing outside the destination;
- :mod:`.ocifile` — installs from OCI layout and ``docker save`` tarballs;
- :mod:`.packaging` — a backend directory built into an image, pushed or written as a tarball.

The names below are the API the rest of the kernel uses.
"""

from .layers import apply_layer, escaping_symlinks
from .ocifile import import_ocifile
from .packaging import build_image, push_image, write_ocifile
from .pull import ProgressFn, pull_image
from .reference import OCIError, Reference, insecure_registry, is_oci_reference
from .registry import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    remote_digest,
)

__all__ = [
    "DOCKER_LIST", "DOCKER_MANIFEST", "OCI_CONFIG", "OCI_INDEX", "OCI_LAYER_GZIP", "OCI_MANIFEST",
    "OCIError", "ProgressFn", "Reference", "apply_layer", "build_image", "escaping_symlinks", "import_ocifile",
    "insecure_registry", "is_oci_reference", "pull_image", "push_image", "remote_digest", "write_ocifile",
]
