"""Reading and writing trees: a cache of resolved trees and the full-or-delta policy.

A commit that changes k files of n writes a delta of k entries against its parent's
tree while the chain is shorter than ``MAX_DEPTH`` and the delta is small next to the
tree; otherwise it writes the tree in full. Storage per commit is then O(k) and
reading any tree touches at most ``MAX_DEPTH`` objects, fewer when an ancestor is
cached (the common case: a writer keeps the trees it just wrote).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from shopfloor.errors import WorkspaceError
from shopfloor.workspace._objects import Entry, TreeObject, decode_tree, encode_tree, object_key, sha256
from shopfloor.workspace._store import ObjectStore

__all__ = ["MAX_DEPTH", "TreeCache"]

MAX_DEPTH = 50


def read_verified(store: ObjectStore, key: str) -> bytes:
    """Read an object and check that its bytes hash to its name."""
    data = store.get(key)
    expected = key.rpartition("/")[2]
    if sha256(data) != expected:
        raise WorkspaceError(
            f"object {key} in {store.url} is corrupt: its content hashes to {sha256(data)[:12]}"
        )
    return data


class TreeCache:
    """Resolved trees by id (LRU); the dicts it returns are shared: copy before changing."""

    def __init__(self, store: ObjectStore, size: int = 32) -> None:
        self.store = store
        self.size = size
        self._cache: OrderedDict[str, tuple[dict[str, Entry], int]] = OrderedDict()
        self._lock = threading.Lock()

    def _cached(self, tree_id: str) -> tuple[dict[str, Entry], int] | None:
        with self._lock:
            hit = self._cache.get(tree_id)
            if hit is not None:
                self._cache.move_to_end(tree_id)
            return hit

    def _remember(self, tree_id: str, entries: dict[str, Entry], depth: int) -> None:
        with self._lock:
            self._cache[tree_id] = (entries, depth)
            self._cache.move_to_end(tree_id)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def raw(self, tree_id: str) -> TreeObject:
        return decode_tree(read_verified(self.store, object_key("trees", tree_id)), tree_id)

    def load(self, tree_id: str) -> dict[str, Entry]:
        return self.load_with_depth(tree_id)[0]

    def load_with_depth(self, tree_id: str) -> tuple[dict[str, Entry], int]:
        hit = self._cached(tree_id)
        if hit is not None:
            return hit
        chain: list[TreeObject] = []
        start: dict[str, Entry] = {}
        current: str | None = tree_id
        while current is not None:
            hit = self._cached(current)
            if hit is not None:
                start = dict(hit[0])
                break
            obj = self.raw(current)
            chain.append(obj)
            current = obj.base
            if len(chain) > MAX_DEPTH + 1:
                raise WorkspaceError(
                    f"tree {tree_id} has a delta chain longer than {MAX_DEPTH}: corrupt store"
                )
        entries = start
        for obj in reversed(chain):
            for path in obj.deleted:
                entries.pop(path, None)
            entries.update(obj.set)
        depth = chain[0].depth if chain else 0
        self._remember(tree_id, entries, depth)
        return entries, depth

    def prepare(
        self,
        entries: Mapping[str, Entry],
        *,
        base: str | None,
        changed: Iterable[str],
        deleted: Iterable[str],
    ) -> tuple[str, bytes]:
        """Encode the tree for ``entries`` (which differ from ``base`` at ``changed`` and ``deleted``)."""
        changed_set = {p for p in changed if p in entries}
        deleted_set = {p for p in deleted if p not in entries}
        depth = 0
        if base is not None:
            depth = self.load_with_depth(base)[1] + 1
        small = (len(changed_set) + len(deleted_set)) * 4 <= max(len(entries), 64)
        if base is not None and depth <= MAX_DEPTH and small:
            obj = TreeObject(
                base=base, depth=depth, set={p: entries[p] for p in changed_set}, deleted=tuple(deleted_set)
            )
        else:
            depth = 0
            obj = TreeObject(base=None, depth=0, set=dict(entries))
        data = encode_tree(obj)
        tree_id = sha256(data)
        self._remember(tree_id, dict(entries), depth)
        return tree_id, data
