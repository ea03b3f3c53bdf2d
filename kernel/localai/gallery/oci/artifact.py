"""Models stored as OCI artifacts (``oras push REF model.gguf``, Ollama's registry): which layer holds the file."""

from __future__ import annotations

from .reference import OCIError
from .registry import Client, check_descriptor, get_manifest, is_index, pick_platform

OLLAMA_MODEL = "application/vnd.ollama.image.model"
OCI_TITLE = "org.opencontainers.image.title"


def model_layer(client: Client, filename: str) -> dict:
    """The layer descriptor holding the model file: the manifest's only layer, else the one titled
    ``filename``, else Ollama's model layer (through an image index for the host platform)."""
    ref = client.ref
    _, doc, mtype = get_manifest(client, ref.digest or ref.tag or "latest")
    for _ in range(3):
        if not is_index(doc, mtype):
            break
        entry = pick_platform(ref, doc.get("manifests"))
        digest, _ = check_descriptor(ref, entry, "index entry")
        _, doc, mtype = get_manifest(client, digest, expect=digest)
    else:
        raise OCIError(f"{ref}: image indexes nested too deeply")
    layers = [d for d in doc.get("layers") or [] if isinstance(d, dict)]
    if not layers:
        raise OCIError(f"{ref}: the manifest has no layers")
    picks = layers if len(layers) == 1 else (
        [d for d in layers if (d.get("annotations") or {}).get(OCI_TITLE) == filename]
        or [d for d in layers if d.get("mediaType") == OLLAMA_MODEL])
    if len(picks) != 1:
        titles = [(d.get("annotations") or {}).get(OCI_TITLE) or d.get("mediaType") for d in layers]
        raise OCIError(f"{ref}: the manifest has {len(layers)} layers ({', '.join(map(str, titles))}); "
                       f"expected one, or one titled {filename!r}")
    check_descriptor(ref, picks[0], "layer")
    return picks[0]
