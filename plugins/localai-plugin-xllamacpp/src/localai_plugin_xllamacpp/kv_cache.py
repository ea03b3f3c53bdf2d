"""Prompt KV that survives unloads: llama.cpp's slot files on disk, restored by prompt prefix.

Inside one engine, llama.cpp already reuses prompt work: a slot keeps its last prompt, the
engine picks the slot with the longest common prefix, and its RAM prompt cache (``cache_ram``)
holds older prompts across slots. All of that is lost when the model is unloaded. This module
keeps it on disk:

- **Save.** When the model is freed (idle watchdog, eviction, ``/backend/shutdown``, server stop)
  every idle slot holding at least ``MIN_TOKENS`` is written with llama.cpp's slot save. After a
  request that computed at least ``EAGER_TOKENS`` new prompt tokens, the same runs on a
  background thread (one at a time), so a crash loses only what came after the last save.
- **Restore.** While files of this model are on disk and not yet loaded, a request's prompt is
  tokenized and compared with each file's tokens (read from the file's own header); the longest
  common prefix of at least ``MIN_RESTORE`` tokens is restored into an idle slot and the request
  is sent to that slot, so llama.cpp computes only the rest.
- **Keys.** Files live in ``<dir>/<key>/``, where the key hashes the model file (size, first and
  last MiB) and every parameter that shapes the KV (context per slot, cache types, RoPE, flash
  attention, unified KV). A changed model or setting never sees another's files.
- **Safety and bounds.** Each ``.bin`` has a ``.json`` sidecar written after it with its size; a
  file whose size disagrees, whose header does not parse, or that llama.cpp refuses, is deleted
  with a log line and never served. The whole directory is kept under ``max_bytes`` by deleting
  the least recently used files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("localai.xllamacpp.kv")

MAGIC = 0x67677371  # "ggsq": llama.cpp's sequence state file
MIN_TOKENS = 256  # a slot shorter than this is cheaper to recompute than to read
MIN_RESTORE = 128  # restore only when at least this many prompt tokens are reused
EAGER_TOKENS = 1024  # save in the background after a request computed this many new prompt tokens
SAMPLE = 1 << 20  # bytes hashed from each end of the model file


def model_key(model_path: str, kv_params: dict[str, Any]) -> str:
    """A short hash of the model file's identity and the parameters that shape its KV."""
    digest = hashlib.sha256()
    size = os.path.getsize(model_path)
    digest.update(str(size).encode())
    with open(model_path, "rb") as handle:
        digest.update(handle.read(SAMPLE))
        handle.seek(max(0, size - SAMPLE))
        digest.update(handle.read(SAMPLE))
    digest.update(json.dumps(kv_params, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


def read_tokens(path: Path) -> list[int] | None:
    """The tokens a slot file holds (from its header), or None when it is not one we can read."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12:
                return None
            magic, _version, count = struct.unpack("<III", head)
            if magic != MAGIC or count > 1 << 24:
                return None
            raw = handle.read(4 * count)
    except OSError:
        return None
    if len(raw) < 4 * count:
        return None
    values = list(struct.unpack(f"<{count}i", raw))
    # llama.cpp's server writes its token list as [-1, 1, n, t0 … tn-1, 0]
    if len(values) >= 3 and values[0] == -1 and 0 <= values[2] <= len(values) - 3:
        return values[3:3 + values[2]]
    return values


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Entry:
    """One saved slot: ``<name>.bin`` and its ``<name>.json`` sidecar."""

    path: Path
    size: int
    n_tokens: int
    last_used: float

    @property
    def sidecar(self) -> Path:
        return self.path.with_suffix(".json")


class KVStore:
    """The cache directory: entries per model key, validated, kept under ``max_bytes`` (LRU)."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.lock = threading.Lock()

    def dir_for(self, key: str) -> Path:
        path = self.root / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _load(self, sidecar: Path) -> Entry | None:
        binary = sidecar.with_suffix(".bin")
        try:
            meta = json.loads(sidecar.read_text())
            size = binary.stat().st_size
        except (OSError, ValueError):
            meta, size = None, -1
        if not isinstance(meta, dict) or size != meta.get("size"):
            log.warning("kv cache: ignoring %s (missing, truncated or corrupt): deleted", binary)
            self.delete(binary)
            return None
        return Entry(binary, size, int(meta.get("n_tokens", 0)), float(meta.get("last_used", 0)))

    def entries(self, key: str) -> list[Entry]:
        found = [self._load(s) for s in sorted(self.dir_for(key).glob("*.json"))]
        return [e for e in found if e is not None]

    def all_entries(self) -> list[Entry]:
        found = [self._load(s) for s in sorted(self.root.glob("*/*.json"))] if self.root.is_dir() else []
        return [e for e in found if e is not None]

    def add(self, key: str, written: Path) -> Entry | None:
        """Keep a freshly written slot file under the hash of its tokens (once per content)."""
        tokens = read_tokens(written)
        if not tokens or len(tokens) < MIN_TOKENS:
            written.unlink(missing_ok=True)
            return None
        name = hashlib.sha256(struct.pack(f"<{len(tokens)}i", *tokens)).hexdigest()[:24]
        target = written.with_name(name + ".bin")
        with self.lock:
            os.replace(written, target)
            entry = Entry(target, target.stat().st_size, len(tokens), time.time())
            self.write_sidecar(entry)
        self.evict()
        return entry

    def write_sidecar(self, entry: Entry) -> None:
        tmp = entry.sidecar.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"size": entry.size, "n_tokens": entry.n_tokens, "last_used": entry.last_used}))
        os.replace(tmp, entry.sidecar)

    def touch(self, entry: Entry) -> None:
        entry.last_used = time.time()
        with self.lock:
            if entry.path.exists():
                self.write_sidecar(entry)

    def delete(self, binary: Path) -> None:
        binary.unlink(missing_ok=True)
        binary.with_suffix(".json").unlink(missing_ok=True)

    def evict(self) -> None:
        """Delete least recently used files until the directory fits ``max_bytes``."""
        with self.lock:
            entries = sorted(self.all_entries(), key=lambda e: e.last_used)
            total = sum(e.size for e in entries)
            while entries and total > self.max_bytes:
                oldest = entries.pop(0)
                self.delete(oldest.path)
                total -= oldest.size
                log.info("kv cache: evicted %s (%d bytes) to stay under %d bytes", oldest.path.name, oldest.size,
                         self.max_bytes)


class SlotCache:
    """One loaded engine's slots and the store: restore before requests, save after and on free."""

    def __init__(self, store: KVStore, key: str, base_url: str):
        self.store = store
        self.key = key
        self.base_url = base_url
        for stray in store.dir_for(key).glob("tmp-*.bin"):  # a save cut short (the process was killed)
            stray.unlink(missing_ok=True)
        self.pending = {e.path.name: e for e in store.entries(key)}  # on disk, not yet in the engine
        self.lock = threading.Lock()
        self.saving = threading.Lock()

    def _post(self, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as answer:
            return json.loads(answer.read())

    def _prompt_tokens(self, body: dict[str, Any], chat: bool) -> list[int]:
        prompt = body.get("prompt", "")
        if chat:
            prompt = self._post("/apply-template", {"messages": body["messages"]}).get("prompt", "")
        return list(self._post("/tokenize", {"content": prompt, "add_special": True}).get("tokens", []))

    def _idle_slot(self) -> int | None:
        slots = self._post("/slots", method="GET")
        idle = [s["id"] for s in slots if not s.get("is_processing")]
        return idle[-1] if idle else None

    def prepare(self, body: dict[str, Any], chat: bool) -> None:
        """Before a request: restore the saved prefix it shares most with, and aim it at that slot."""
        if not self.pending:
            return
        with self.lock:
            if not self.pending:
                return
            try:
                tokens = self._prompt_tokens(body, chat)
            except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
                log.warning("kv cache: could not tokenize the prompt for a restore: %s", exc)
                return
            best, best_len = None, 0
            for entry in list(self.pending.values()):
                saved = read_tokens(entry.path)
                if saved is None:
                    log.warning("kv cache: ignoring %s (unreadable header): deleted", entry.path)
                    self.store.delete(entry.path)
                    self.pending.pop(entry.path.name, None)
                    continue
                length = common_prefix(saved, tokens)
                if length > best_len:
                    best, best_len = entry, length
            if best is None or best_len < MIN_RESTORE:
                return
            self.pending.pop(best.path.name, None)
            slot = self._idle_slot()
            if slot is None:
                return
            started = time.perf_counter()
            try:
                answer = self._post(f"/slots/{slot}?action=restore", {"filename": best.path.name})
            except (urllib.error.URLError, OSError, ValueError) as exc:
                log.warning("kv cache: llama.cpp refused %s (%s): deleted", best.path, exc)
                self.store.delete(best.path)
                self._erase(slot)
                return
            self.store.touch(best)
            body["id_slot"] = slot
            log.info("kv cache: restored %d tokens (%d shared with the prompt) into slot %d in %.0f ms",
                     answer.get("n_restored", 0), best_len, slot, (time.perf_counter() - started) * 1000)

    def _erase(self, slot: int) -> None:
        try:
            self._post(f"/slots/{slot}?action=erase", {})
        except (urllib.error.URLError, OSError, ValueError):
            pass

    def save_all(self) -> int:
        """Write every idle slot worth keeping; returns how many files were kept."""
        kept = 0
        with self.saving:
            try:
                slots = self._post("/slots", method="GET")
            except (urllib.error.URLError, OSError, ValueError) as exc:
                log.warning("kv cache: cannot list slots to save: %s", exc)
                return 0
            for slot in slots:
                if slot.get("is_processing"):
                    continue
                name = f"tmp-{uuid.uuid4().hex}.bin"
                try:
                    answer = self._post(f"/slots/{slot['id']}?action=save", {"filename": name})
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    log.warning("kv cache: saving slot %s failed: %s", slot["id"], exc)
                    continue
                written = self.store.dir_for(self.key) / name
                if answer.get("n_saved", 0) < MIN_TOKENS:
                    written.unlink(missing_ok=True)
                    continue
                if self.store.add(self.key, written) is not None:
                    kept += 1
        return kept

    def after_request(self, usage: dict[str, Any] | None) -> None:
        """After a long prompt was computed, save in the background (never two saves at once)."""
        usage = usage or {}
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        if int(usage.get("prompt_tokens") or 0) - cached < EAGER_TOKENS or self.saving.locked():
            return
        threading.Thread(target=self.save_all, name="kv-cache-save", daemon=True).start()


def open_store(model_path: str, params: Any, req: Any) -> tuple[KVStore, str] | None:
    """The store and key for this load when the kernel turned the cache on (``LOCALAI_KV_CACHE_DIR``,
    ``LOCALAI_KV_CACHE_SIZE`` > 0) and prompts are cached; points llama.cpp's slot files at it."""
    root = os.environ.get("LOCALAI_KV_CACHE_DIR")
    size = int(os.environ.get("LOCALAI_KV_CACHE_SIZE") or 0)
    if not root or size <= 0 or not params.cache_prompt:
        return None
    kv_params = {
        "n_ctx_slot": params.n_ctx if params.kv_unified else params.n_ctx // max(1, params.n_parallel),
        "kv_unified": bool(params.kv_unified), "cache_type_k": req.CacheTypeKey, "cache_type_v": req.CacheTypeValue,
        "rope_freq_base": req.RopeFreqBase, "rope_freq_scale": req.RopeFreqScale,
        "flash_attention": req.FlashAttention, "no_kv_offload": bool(req.NoKVOffload),
    }
    store = KVStore(Path(root), size)
    key = model_key(model_path, kv_params)
    params.slot_save_path = str(store.dir_for(key)) + os.sep
    return store, key
