"""``s3://BUCKET/PREFIX``: objects and refs in any S3-compatible store.

Query options: ``endpoint_url`` (for MinIO, SeaweedFS, Ceph...; or set AWS_ENDPOINT_URL),
``region``. Credentials come from boto3's usual chain (environment, profile, role).
A ref is a small object updated with conditional writes: ``If-None-Match: *`` to
create it and ``If-Match: ETAG`` to replace it, so the store itself arbitrates between
writers and a lost race is a 412 that becomes WorkspaceConflictError. Object puts are
single requests, so a writer killed mid-commit leaves no partial object.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from shopfloor.errors import ConfigError, WorkspaceConflictError, WorkspaceError, WorkspaceNotFoundError
from shopfloor.workspace._store import Exactly, ObjectStore, Readable, RefValue, StoredObject

__all__ = ["S3Store"]

_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str, *, client: Any, url: str) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client
        self.url = url
        from botocore.exceptions import ClientError

        self._client_error = ClientError

    @classmethod
    def from_url(cls, url: str, options: dict[str, str]) -> S3Store:
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigError(f"workspace store URL {url!r} names no bucket; write s3://BUCKET/PREFIX")
        unknown = set(options) - {"endpoint_url", "region"}
        if unknown:
            raise ConfigError(f"workspace store URL {url!r}: unknown option(s) {sorted(unknown)}")
        client = boto3.client(
            "s3",
            endpoint_url=options.get("endpoint_url"),
            region_name=options.get("region"),
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=16),
        )
        return cls(parts.netloc, parts.path, client=client, url=url)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _fail(self, exc: Any, what: str) -> WorkspaceError:
        return WorkspaceError(f"{what} in {self.url} failed: {exc}")

    def put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
        except self._client_error as exc:
            if _code(exc) not in _PRECONDITION:  # already there: content-addressed, so identical
                raise self._fail(exc, f"writing {key}") from exc

    def put_file(self, key: str, source: Readable, size: int) -> None:
        # One PUT with a declared length, read from ``source`` as it is sent (botocore streams a
        # file-like body); the store keeps nothing of a request that fails or falls short.
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=Exactly(source, size, key),
                ContentLength=size,
                IfNoneMatch="*",
            )
        except self._client_error as exc:
            if _code(exc) not in _PRECONDITION:
                raise self._fail(exc, f"writing {key}") from exc

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        batch = list(items)
        if len(batch) <= 1:
            for key, data in batch:
                self.put(key, data)
            return
        with ThreadPoolExecutor(max_workers=8) as pool:
            for future in [pool.submit(self.put, key, data) for key, data in batch]:
                future.result()

    def get(self, key: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self._client_error as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise WorkspaceNotFoundError(f"object {key} is not in {self.url}") from None
            raise self._fail(exc, f"reading {key}") from exc
        return body

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._client_error as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                return False
            raise self._fail(exc, f"checking {key}") from exc
        return True

    def _list_raw(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                yield from page.get("Contents", ())
        except self._client_error as exc:
            raise self._fail(exc, f"listing {prefix}") from exc

    def list(self, prefix: str) -> Iterator[StoredObject]:
        for item in self._list_raw(prefix):
            key = item["Key"][len(self.prefix) :]
            if key.startswith("refs/"):
                continue
            yield StoredObject(key=key, size=int(item["Size"]), mtime=item["LastModified"].timestamp())

    def delete(self, keys: Iterable[str]) -> int:
        batch = [self._key(k) for k in keys]
        count = 0
        for start in range(0, len(batch), 1000):
            chunk = batch[start : start + 1000]
            try:
                reply = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
                )
            except self._client_error as exc:
                raise self._fail(exc, "deleting objects") from exc
            count += len(chunk) - len(reply.get("Errors", ()))
        return count

    def get_ref(self, name: str) -> RefValue | None:
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self._key("refs/" + name))
        except self._client_error as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._fail(exc, f"reading ref {name}") from exc
        return RefValue(value=reply["Body"].read().decode(), token=reply["ETag"])

    def set_ref(self, name: str, value: str, *, expected: RefValue | None) -> RefValue:
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected.token}
        try:
            reply = self.client.put_object(
                Bucket=self.bucket, Key=self._key("refs/" + name), Body=value.encode(), **condition
            )
        except self._client_error as exc:
            if _code(exc) in _PRECONDITION:
                raise WorkspaceConflictError(
                    f"ref {name} changed meanwhile (conditional write refused); reload the head and retry"
                ) from None
            raise self._fail(exc, f"updating ref {name}") from exc
        return RefValue(value=value, token=reply["ETag"])

    def delete_ref(self, name: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key("refs/" + name))
        except self._client_error as exc:
            raise self._fail(exc, f"deleting ref {name}") from exc

    def list_refs(self, prefix: str) -> dict[str, str]:
        refs: dict[str, str] = {}
        for item in self._list_raw("refs/" + prefix):
            name = item["Key"][len(self.prefix) + len("refs/") :]
            ref = self.get_ref(name)
            if ref is not None:
                refs[name] = ref.value
        return refs

    def close(self) -> None:
        self.client.close()
