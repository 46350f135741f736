"""S3Store: the Store protocol on Amazon S3 (or any S3-compatible server) through boto3.

boto3 is blocking, so every call leaves the event loop through `_call` (the one offload point).
Create-only writes use `If-None-Match: *`, so a segment can never be overwritten, even by a
second agent; every PUT carries a SHA-256 checksum the server verifies before storing.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, cast

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    FlexibleChecksumError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from agent.archive.layout import probe_key
from agent.config import S3StoreConfig
from agent.errors import ObjectExists, ObjectNotFound, StoreError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)
T = TypeVar("T")
_Addressing = Literal["auto", "virtual", "path"]

PART_SIZE = 16 << 20  # multipart part size; S3 allows 10,000 parts, so objects up to 160 GiB
_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
_EXISTS = frozenset({"PreconditionFailed", "412"})
_DENIED = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                     "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled"})
# Answers that mean "not now" rather than "never": the spool holds the object and retries.
_TRANSIENT = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                        "Throttling", "ThrottlingException", "RequestTimeTooSkewed",
                        "ConditionalRequestConflict", "OperationAborted"})


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """One entry of ListObjectVersions: a stored version, or a delete marker hiding older ones."""

    key: str
    version_id: str
    latest: bool
    delete_marker: bool
    modified: datetime | None = None


class S3Unavailable(StoreError):
    """S3 did not answer or answered 5xx/throttled: the write may succeed later (the spool's cue)."""


def sha256_b64(data: bytes) -> str:
    """The base64 SHA-256 that S3 expects in x-amz-checksum-sha256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def make_client(cfg: S3StoreConfig) -> S3Client:
    """A boto3 client from the normal credential chain (env, profile, web identity, instance role)."""
    config = BotoConfig(
        region_name=cfg.region,
        s3={"addressing_style": cast(_Addressing, cfg.addressing_style)},
        retries={"mode": "standard", "max_attempts": cfg.max_attempts},
        connect_timeout=cfg.connect_timeout.total_seconds(),
        read_timeout=cfg.read_timeout.total_seconds(),
        max_pool_connections=32,
    )
    return boto3.session.Session().client("s3", endpoint_url=cfg.endpoint_url, config=config)


class S3Store:
    """Store on one bucket under one key prefix (contract 2's `<root>`)."""

    name: ClassVar[str] = "s3"

    def __init__(self, cfg: S3StoreConfig, *, client: S3Client | None = None) -> None:
        self.cfg = cfg
        self.bucket = cfg.bucket
        self.prefix = f"{cfg.prefix.strip('/')}/" if cfg.prefix.strip("/") else ""
        self.multipart_threshold = cfg.multipart_threshold
        self.part_size = PART_SIZE
        self.list_page_size = 1000  # S3's maximum; tests lower it to exercise pagination
        self._client = client if client is not None else make_client(cfg)

    def __repr__(self) -> str:
        return f"S3Store(s3://{self.bucket}/{self.prefix})"

    # -- the offload point and error mapping -------------------------------------------------

    async def _call(self, op: str, key: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """Run one boto3 call in a worker thread and turn its failure into a StoreError."""
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, op, key) from exc

    def _url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _error(self, exc: ClientError | BotoCoreError, op: str, key: str) -> StoreError:
        """Say what failed, where, and what the operator can do; never echo credentials."""
        where = f"S3 {op} {self._url(key)}"
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StoreError(f"{where}: no AWS credentials found; provide them through the environment "
                              "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), AWS_PROFILE, web identity or an "
                              "instance/task role")
        if isinstance(exc, SSLError):
            return StoreError(f"{where}: TLS with {self.cfg.endpoint_url or 'S3'} failed ({exc}); check the "
                              "endpoint's certificate and the CA bundle in use (AWS_CA_BUNDLE)")
        if isinstance(exc, HTTPClientError | BotoConnectionError | ConnectionClosedError):
            endpoint = self.cfg.endpoint_url or f"the AWS S3 endpoint in {self.cfg.region}"
            return S3Unavailable(f"{where}: cannot reach {endpoint} ({type(exc).__name__}); "
                                 "check the network path and store.endpoint_url")
        if isinstance(exc, FlexibleChecksumError):
            return StoreError(f"{where}: the bytes received do not match the checksum S3 stored ({exc}); "
                              "retry, and run `agent verify` if it persists")
        if not isinstance(exc, ClientError):
            return StoreError(f"{where}: {exc}")
        return self._client_error(exc, where)

    def _client_error(self, exc: ClientError, where: str) -> StoreError:
        err: Mapping[str, Any] = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        text = f"{where}: {code or status}: {err.get('Message', '')}".rstrip(": ")
        if code in _NOT_FOUND:
            return ObjectNotFound(f"{where}: no such object")
        if code in _EXISTS or status == 412:
            return ObjectExists(f"{where}: already exists (create-only write refused by S3)")
        if code == "NoSuchBucket":
            return StoreError(f"{where}: bucket {self.bucket!r} does not exist (store.bucket, store.region)")
        if code in _DENIED or status == 403:
            return StoreError(f"{text}; check the credentials boto3 found and that the bucket policy allows "
                              "s3:GetObject, s3:PutObject, s3:ListBucket (and the KMS key, with SSE-KMS)")
        if code in _TRANSIENT or status >= 500 or status == 429:
            return S3Unavailable(text)
        return StoreError(text)

    # -- Store protocol ----------------------------------------------------------------------

    def _write_args(self, overwrite: bool) -> dict[str, Any]:
        """Encryption for every object; Object Lock retention on every immutable one."""
        args: dict[str, Any] = {}
        if self.cfg.sse:
            args["ServerSideEncryption"] = self.cfg.sse
            if self.cfg.kms_key_id:
                args["SSEKMSKeyId"] = self.cfg.kms_key_id
        if self.cfg.object_lock_mode and not overwrite:
            args["ObjectLockMode"] = self.cfg.object_lock_mode
            args["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(days=self.cfg.object_lock_days)
        return args

    async def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        """A 200 from S3 is the durability point; create-only puts send If-None-Match: *."""
        if len(data) >= self.multipart_threshold:
            await self._put_multipart(key, data, overwrite)
            return
        args = self._write_args(overwrite)
        if not overwrite:
            args["IfNoneMatch"] = "*"
        await self._call("PUT", key, self._client.put_object, Bucket=self.bucket, Key=self.prefix + key,
                         Body=data, ChecksumAlgorithm="SHA256", ChecksumSHA256=sha256_b64(data), **args)

    async def _put_multipart(self, key: str, data: bytes, overwrite: bool) -> None:
        """Large objects go up in parts; the object appears only at complete, so it is still atomic."""
        full = self.prefix + key
        created = await self._call("CreateMultipartUpload", key, self._client.create_multipart_upload,
                                   Bucket=self.bucket, Key=full, ChecksumAlgorithm="SHA256",
                                   **self._write_args(overwrite))
        upload_id = created["UploadId"]
        try:
            parts = await self._upload_parts(key, upload_id, data)
            extra: dict[str, Any] = {} if overwrite else {"IfNoneMatch": "*"}
            await self._call("CompleteMultipartUpload", key, self._client.complete_multipart_upload,
                             Bucket=self.bucket, Key=full, UploadId=upload_id,
                             MultipartUpload={"Parts": parts}, **extra)
        except BaseException:
            await self._abort(key, upload_id)
            raise

    async def _upload_parts(self, key: str, upload_id: str, data: bytes) -> list[CompletedPartTypeDef]:
        parts: list[CompletedPartTypeDef] = []
        view = memoryview(data)
        for number, start in enumerate(range(0, len(data), self.part_size), start=1):
            chunk = bytes(view[start:start + self.part_size])
            checksum = sha256_b64(chunk)
            resp = await self._call("UploadPart", key, self._client.upload_part, Bucket=self.bucket,
                                    Key=self.prefix + key, UploadId=upload_id, PartNumber=number,
                                    Body=chunk, ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum)
            parts.append({"ETag": resp["ETag"], "PartNumber": number, "ChecksumSHA256": checksum})
        return parts

    async def _abort(self, key: str, upload_id: str) -> None:
        """Best effort: an abandoned upload costs storage, so say so if it cannot be aborted."""
        try:
            await self._call("AbortMultipartUpload", key, self._client.abort_multipart_upload,
                             Bucket=self.bucket, Key=self.prefix + key, UploadId=upload_id)
        except StoreError as exc:
            log.warning("Multipart upload could not be aborted; a bucket lifecycle rule should expire it.",
                        extra={"key": key, "error": str(exc)})

    async def get(self, key: str) -> bytes:
        """ChecksumMode makes botocore check the stored checksum against the bytes it received."""
        resp = await self._call("GET", key, self._client.get_object, Bucket=self.bucket,
                                Key=self.prefix + key, ChecksumMode="ENABLED")
        body = resp["Body"]
        try:
            return await self._call("GET", key, body.read)
        finally:
            body.close()

    async def exists(self, key: str) -> bool:
        try:
            await self._call("HEAD", key, self._client.head_object, Bucket=self.bucket, Key=self.prefix + key)
        except ObjectNotFound:
            return False
        return True

    async def list(self, prefix: str) -> AsyncIterator[str]:
        """Every key under `prefix`, sorted here: AWS lists in UTF-8 byte order, but S3-compatible
        servers built on a directory tree (SeaweedFS) list depth-first, so "s/x" before "s.t". The
        listing is held in memory, which callers bound by listing a partition or a stream.
        """
        for key in sorted(await self._list_all(prefix)):
            yield key

    async def _list_all(self, prefix: str) -> builtins.list[str]:
        keys: builtins.list[str] = []
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix,
                                    "MaxKeys": self.list_page_size}
            if token:
                args["ContinuationToken"] = token
            page = await self._call("LIST", prefix, self._client.list_objects_v2, **args)
            keys.extend(obj["Key"][len(self.prefix):] for obj in page.get("Contents", []))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return keys

    async def versions(self, prefix: str) -> builtins.list[ObjectVersion]:
        """Every version and delete marker under `prefix` (ListObjectVersions). On a versioned
        bucket, and every Object Lock bucket is one, a plain DeleteObject only hides an object
        behind a delete marker; verify uses this to find such objects and say how to restore them."""
        out: builtins.list[ObjectVersion] = []
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix,
                                "MaxKeys": self.list_page_size}
        while True:
            page = await self._call("ListObjectVersions", prefix, self._client.list_object_versions, **args)
            for kind, marker in (("Versions", False), ("DeleteMarkers", True)):
                for v in page.get(kind, []):  # type: ignore[attr-defined]
                    out.append(ObjectVersion(v["Key"][len(self.prefix):], str(v.get("VersionId") or "null"),
                                             bool(v.get("IsLatest")), marker, v.get("LastModified")))
            if not page.get("IsTruncated"):
                return out
            args["KeyMarker"] = page.get("NextKeyMarker", "")
            args["VersionIdMarker"] = page.get("NextVersionIdMarker", "")

    async def delete(self, key: str) -> None:
        """Plain delete; on a versioned (Object Lock) bucket this only adds a delete marker."""
        await self._call("DELETE", key, self._client.delete_object, Bucket=self.bucket, Key=self.prefix + key)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._client.close)

    # -- health ------------------------------------------------------------------------------

    async def check(self) -> None:
        """Prove the bucket is reachable and writable, and locked when Object Lock is configured."""
        await self._call("HeadBucket", "", self._client.head_bucket, Bucket=self.bucket)
        if self.cfg.object_lock_mode:
            await self._check_object_lock()
        probe = probe_key(uuid.uuid4().hex)
        payload = uuid.uuid4().bytes
        await self.put(probe, payload, overwrite=True)
        try:
            if await self.get(probe) != payload:
                raise StoreError(f"S3 check {self._url(probe)}: read back different bytes than written")
        finally:
            await self.delete(probe)

    async def _check_object_lock(self) -> None:
        try:
            resp = await self._call("GetObjectLockConfiguration", "",
                                    self._client.get_object_lock_configuration, Bucket=self.bucket)
            enabled = resp.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        except StoreError as exc:
            if "ObjectLockConfigurationNotFound" not in str(exc):
                raise
            enabled = False
        if not enabled:
            raise StoreError(
                f"store.object_lock_mode = {self.cfg.object_lock_mode!r} but bucket {self.bucket!r} does not "
                "have Object Lock enabled; create the bucket with Object Lock (ObjectLockEnabledForBucket) "
                "or remove object_lock_mode from the config")
