"""Prompt states on disk, for the next process: ``DiskPrefixCache``.

``PrefixStates`` keeps processed prompt prefixes in memory, so a new process (each CLI command, each
worker) evaluates an agent's instructions, tools and skill instructions again at its first call: 10 s
on a busy 2-core machine for the 0.5B model. A state saved here when a prefix is kept is read back by
the first prompt of a later process that starts with the same tokens.

A file holds one state: a header (magic, format version, the cache's identity digest, token count,
state length, the payload's sha256), the tokens, then llama.cpp's context data. The identity is the
digest of what makes a state usable by another context: the weights' sha256, llama.cpp's version and
the context settings that shape the KV cache (``identity``). A file of another identity belongs to
another model or setting and is left alone; one that is truncated, fails its checksum, or has another
format version is removed when read, and so is one llama.cpp refuses to restore. Files are written to
a temporary name and renamed into place, so a reader never sees half of one; the directory is kept
under ``limit_bytes``, the least recently used (by modification time, touched on every read) removed
first. A failure to read or write is logged and the request goes on as without the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
import time
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopfloor.models._prefix import common_prefix

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = ["DiskPrefixCache", "DiskState", "PromptCache", "identity", "weights_sha256"]

logger = logging.getLogger("shopfloor.models")

MAGIC = b"SFKV"
VERSION = 1
#: magic, version, identity (32), token count, state length, payload sha256 (32)
_HEADER = struct.Struct("<4sI32sIQ32s")
SUFFIX = ".kvstate"


@dataclass(frozen=True, kw_only=True)
class DiskState:
    tokens: tuple[int, ...]
    data: bytes


@dataclass(frozen=True, kw_only=True)
class PromptCache:
    """Where a local model saves its prompt states (``[models] prompt_cache_mb``, under the home's cache)."""

    directory: Path
    limit_bytes: int
    #: the catalogue's pin, verified at install; None: hashed from the file once (``weights_sha256``)
    weights_sha256: str | None = None

    def open(self, llama: Llama, weights: Path) -> DiskPrefixCache:
        """The cache of states usable by ``llama``'s context (loaded from ``weights``)."""
        return DiskPrefixCache(
            self.directory,
            identity(self.weights_sha256 or weights_sha256(weights, self.directory), context_settings(llama)),
            limit_bytes=self.limit_bytes,
        )


def context_settings(llama: Llama) -> dict[str, Any]:
    """What of a context's setup its saved data depends on: llama.cpp's build, the context length, the
    KV cache's types and layout. Threads and batch sizes change how it is computed, not what it holds."""
    import llama_cpp

    params = llama.context_params
    settings: dict[str, Any] = {"llama_cpp": llama_cpp.__version__, "n_ctx": llama.n_ctx()}
    for name in (
        "type_k",
        "type_v",
        "flash_attn_type",
        "flash_attn",
        "n_seq_max",
        "swa_full",
        "kv_unified",
        "embeddings",
        "attention_type",
        "rope_freq_base",
        "rope_freq_scale",
        "yarn_ext_factor",
    ):
        if hasattr(params, name):
            settings[name] = getattr(params, name)
    return settings


def identity(weights_sha256: str, settings: Mapping[str, object]) -> bytes:
    """The digest a state is usable under: the weights and the settings that shape the context's data."""
    text = json.dumps({"weights": weights_sha256, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).digest()


def weights_sha256(path: Path, memo_dir: Path) -> str:
    """The sha256 of a weights file, computed once per (path, size, mtime) and remembered in ``memo_dir``
    (hashing 500 MB takes a second: a catalogue model's pin is passed instead, verified at install)."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()
    memo = memo_dir / f"weights-{key[:32]}.sha256"
    try:
        recorded = memo.read_text().strip()
        if len(recorded) == 64:
            return recorded
    except OSError:
        pass
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    value = digest.hexdigest()
    try:
        _write_atomic(memo, value.encode())
    except OSError as exc:
        logger.warning("could not record the weights digest in %s: %s", memo_dir, exc)
    return value


def _write_atomic(target: Path, *parts: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            for part in parts:
                handle.write(part)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class DiskPrefixCache:
    """States of one identity in ``directory``, the whole directory kept under ``limit_bytes``."""

    def __init__(self, directory: Path, key: bytes, *, limit_bytes: int) -> None:
        if len(key) != 32:
            raise ValueError("the identity must be a 32-byte digest")
        self.directory = directory
        self.key = key
        self.limit_bytes = limit_bytes
        #: states read back and saved so far (for tests and measurements)
        self.loads = 0
        self.saves = 0

    def _path(self, tokens: Sequence[int]) -> Path:
        name = hashlib.sha256(self.key + array("i", tokens).tobytes()).hexdigest()[:40]
        return self.directory / f"{name}{SUFFIX}"

    def _entries(self) -> list[tuple[Path, os.stat_result]]:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        entries = []
        for name in names:
            if name.endswith(SUFFIX):
                path = self.directory / name
                try:
                    entries.append((path, path.stat()))
                except OSError:  # removed by another process meanwhile
                    continue
        return entries

    def _drop(self, path: Path, why: str) -> None:
        logger.warning("removing the prompt state %s: %s", path, why)
        path.unlink(missing_ok=True)

    def _header(self, path: Path, size: int) -> tuple[tuple[int, ...], bytes] | None:
        """The tokens and payload digest of a file of this identity; None for another
        identity (kept) or a damaged file (removed)."""
        with path.open("rb") as handle:
            head = handle.read(_HEADER.size)
            if len(head) < _HEADER.size or head[:4] != MAGIC:
                self._drop(path, "not a prompt-state file")
                return None
            _, version, key, count, length, digest = _HEADER.unpack(head)
            if version != VERSION:
                self._drop(path, f"format version {version}, expected {VERSION}")
                return None
            if key != self.key:
                return None
            if size != _HEADER.size + 4 * count + length:
                self._drop(path, f"{size} bytes where its header says {_HEADER.size + 4 * count + length}")
                return None
            tokens = array("i")
            tokens.frombytes(handle.read(4 * count))
        return tuple(tokens), digest

    def best(self, tokens: Sequence[int], shared: int) -> DiskState | None:
        """The saved state of this identity sharing the most with ``tokens``, where that is more than
        ``shared`` tokens; its file checked whole and touched (most recently used)."""
        found: tuple[Path, int] | None = None
        for path, stat in self._entries():
            try:
                header = self._header(path, stat.st_size)
            except OSError as exc:
                logger.warning("cannot read the prompt state %s: %s", path, exc)
                continue
            if header is not None and (n := common_prefix(header[0], tokens)) > shared:
                found, shared = (path, n), n
        if found is None:
            return None
        return self._load(found[0])

    def _load(self, path: Path) -> DiskState | None:
        try:
            blob = path.read_bytes()
            header = self._header(path, len(blob))
            if header is None:
                return None
            saved, digest = header
            payload = memoryview(blob)[_HEADER.size :]
            if hashlib.sha256(payload).digest() != digest:
                self._drop(path, "its checksum does not match (damaged)")
                return None
            os.utime(path)
        except OSError as exc:
            logger.warning("cannot read the prompt state %s: %s", path, exc)
            return None
        self.loads += 1
        return DiskState(tokens=saved, data=bytes(payload[4 * len(saved) :]))

    def discard(self, tokens: Sequence[int], why: str) -> None:
        """Remove the saved state with these tokens (llama.cpp refused it: ``why``)."""
        path = self._path(tokens)
        if path.exists():
            self._drop(path, why)

    def save(self, tokens: Sequence[int], data: bytes) -> None:
        """Save a state (unless one with these tokens is saved, or it alone is over the limit), then
        remove the least recently used states until the directory is under the limit."""
        encoded = array("i", tokens).tobytes()
        size = _HEADER.size + len(encoded) + len(data)
        target = self._path(tokens)
        if size > self.limit_bytes or target.exists():
            return
        digest = hashlib.sha256()
        digest.update(encoded)
        digest.update(data)
        header = _HEADER.pack(MAGIC, VERSION, self.key, len(tokens), len(data), digest.digest())
        try:
            _write_atomic(target, header, encoded, data)
        except OSError as exc:
            logger.warning("cannot save a prompt state in %s: %s", self.directory, exc)
            return
        self.saves += 1
        self.evict()

    def evict(self) -> None:
        self._sweep_temporaries()
        entries = sorted(self._entries(), key=lambda entry: entry[1].st_mtime_ns)
        total = sum(stat.st_size for _, stat in entries)
        for path, stat in entries:
            if total <= self.limit_bytes:
                break
            path.unlink(missing_ok=True)
            total -= stat.st_size

    def _sweep_temporaries(self) -> None:
        """Remove what a writer killed between its write and its rename left (an hour old or more)."""
        try:
            names = [name for name in os.listdir(self.directory) if name.startswith(".tmp-")]
        except OSError:
            return
        horizon = time.time() - 3600
        for name in names:
            path = self.directory / name
            try:
                if path.stat().st_mtime < horizon:
                    path.unlink()
            except OSError:
                continue
