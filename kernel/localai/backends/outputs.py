"""Where backends write: one directory per request, made by the kernel, inside the output root
that every backend it starts is told about (``LOCALAI_BACKEND_OUTPUT_DIR``)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def request_dir(root: Path) -> Iterator[Path]:
    """A fresh 0700 directory under ``root`` for one request's output paths; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="request-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
