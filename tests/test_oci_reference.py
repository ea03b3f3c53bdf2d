"""OCI references: parsing, printing, recognising them, insecure registries."""

from __future__ import annotations


import pytest

from localai.gallery import oci
from localai.gallery.oci import OCIError, Reference


@pytest.mark.parametrize("ref, expected", [
    ("oci://127.0.0.1:5000/backends/cpu-llama:v1", ("127.0.0.1:5000", "backends/cpu-llama", "v1", None)),
    ("quay.io/go-skynet/local-ai-backends:latest-cpu",
     ("quay.io", "go-skynet/local-ai-backends", "latest-cpu", None)),
    ("localhost/x/y", ("localhost", "x/y", "latest", None)),
    ("localhost:5000/x", ("localhost:5000", "x", "latest", None)),
    ("ubuntu", ("docker.io", "library/ubuntu", "latest", None)),
    ("ubuntu:22.04", ("docker.io", "library/ubuntu", "22.04", None)),
    ("myorg/img:1", ("docker.io", "myorg/img", "1", None)),
    ("docker.io/ubuntu", ("docker.io", "library/ubuntu", "latest", None)),
    ("ghcr.io/a/b@sha256:" + "a" * 64, ("ghcr.io", "a/b", None, "sha256:" + "a" * 64)),
    ("ghcr.io/a/b:t@sha256:" + "b" * 64, ("ghcr.io", "a/b", "t", "sha256:" + "b" * 64)),
])
def test_reference_parse(ref, expected):
    r = Reference.parse(ref)
    assert (r.registry, r.repository, r.tag, r.digest) == expected
    assert Reference.parse(str(r)) == r


@pytest.mark.parametrize("bad", ["", "oci://", "quay.io/A/Upper:x", "quay.io/a@sha256:short",
                                 "quay.io/a:bad tag", "http://quay.io/a"])
def test_reference_parse_rejects(bad):
    with pytest.raises(OCIError, match="invalid image reference"):
        Reference.parse(bad)


def test_reference_str():
    assert str(Reference.parse("oci://quay.io/a/b:c")) == "quay.io/a/b:c"
    assert str(Reference.parse("ubuntu")) == "docker.io/library/ubuntu:latest"


@pytest.mark.parametrize("uri, expected", [
    ("oci://anything/x:y", True), ("quay.io/go-skynet/x:latest", True), ("ghcr.io/a/b", True),
    ("docker.io/library/ubuntu", True), ("127.0.0.1:5000/a/b:c", True), ("localhost:5000/a", True),
    ("localhost/a", True), ("/abs/path", False), ("./rel/dir", False), ("rel/dir", False),
    ("file:///x/y", False), ("https://example.com/x.tar", False), ("http://h/x", False),
    ("ocifile:///tmp/x.tar", False), ("llama-cpp", False), ("quay.io", False), ("~/x", False),
])
def test_is_oci_reference(uri, expected):
    assert oci.is_oci_reference(uri) is expected


def test_insecure_registry():
    for host in ("127.0.0.1:5000", "127.8.9.10", "localhost", "localhost:5000", "[::1]:5000", "::1"):
        assert oci.insecure_registry(host), host
    for host in ("quay.io", "10.0.0.5:5000", "registry.lan:5000", "localhost.evil.com"):
        assert not oci.insecure_registry(host), host
    listed = ["registry.lan:5000", "10.0.0.5"]  # Settings.insecure_registries (LOCALAI_INSECURE_REGISTRIES)
    assert oci.insecure_registry("registry.lan:5000", listed)
    assert not oci.insecure_registry("registry.lan:6000", listed)
    assert not oci.insecure_registry("registry.lan", listed)
    assert oci.insecure_registry("10.0.0.5:443", listed) and oci.insecure_registry("10.0.0.5", listed)
