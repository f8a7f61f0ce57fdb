"""The served tree in an S3-compatible bucket, kept in step by every publish.

The repository builds each new state in its local tree (``DIR/public``), as
always; when ``private/config.json`` names a bucket (``custody-repo init
--public s3://bucket/prefix --endpoint-url URL``), every commit then uploads
the files it wrote, **in the order it wrote them**: target files and links,
delegated roles, targets and root, snapshot, and ``timestamp.json`` last. A
reader of the bucket therefore never sees a timestamp that names a file not
yet there: it reads the old state or the new one.

The upload is journaled: the list of files is saved (``private/bucket-journal.json``)
before the commit writes its first file, even locally, and removed after the
last upload; the next transaction (or ``custody-repo sync``) replays a journal
it finds. A publisher killed anywhere leaves the bucket at the old state, and
the next write completes it, the files already on disk included. Uploading
an immutable file twice is harmless; ``timestamp.json`` comes last either way.

Every object carries the headers a CDN needs: ``Cache-Control`` immutable for
version- and hash-prefixed names, ``no-cache`` (revalidate) for
``timestamp.json``, ``root.json`` and any other name without a prefix; and
``Content-Type``. Credentials come from the usual AWS environment and files
(boto3's default chain); path-style addressing works with every S3 dialect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from custody.repository.errors import BucketError, RepositoryError
from custody.repository.storage import (
    REVALIDATE,
    RepoPaths,
    cache_control,
    write_atomic,
    write_order_of,
)


@dataclass(frozen=True)
class BucketLocation:
    """``s3://bucket/prefix`` and, for stores other than AWS, their endpoint."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None

    @classmethod
    def parse(cls, url: str, endpoint_url: str | None = None) -> BucketLocation:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise RepositoryError(f"{url!r} is not an s3://BUCKET[/PREFIX] location")
        return cls(parsed.netloc, parsed.path.strip("/"), endpoint_url)

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


#: S3 error codes that mean "these credentials are not accepted here".
CREDENTIAL_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed"})


def failure(exc: BaseException) -> str:
    """Why a bucket call failed, in a few words: refused credentials, unreachable, or the code.

    boto3 wraps a failed upload (``S3UploadFailedError``) around the S3 error
    text, so the code is looked for in the message as well as in the response.
    """
    import re

    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a profile"
    if isinstance(exc, EndpointConnectionError):
        return f"unreachable: {exc}"
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) \
        else next(iter(re.findall(r"An error occurred \((\w+)\)", str(exc))), "")
    if code in CREDENTIAL_CODES:
        return f"the store refused the credentials: {code}"
    return code or type(exc).__name__


def content_type(relative: str) -> str:
    return "application/json" if relative.startswith("metadata/") and \
        relative.endswith(".json") else "application/octet-stream"


def _content_md5(params: dict[str, Any], **_: Any) -> None:
    import base64
    import hashlib

    body = params.get("body") or b""
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, bytes):
        params["headers"]["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()


class Bucket:
    """The bucket holding the served tree (boto3, path-style addressing)."""

    def __init__(self, location: BucketLocation, client: Any = None) -> None:
        self.location = location
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("s3", endpoint_url=location.endpoint_url,
                                  config=Config(s3={"addressing_style": "path"},
                                                retries={"max_attempts": 5}))
            # S3 requires Content-MD5 on DeleteObjects, and Swift, Ceph and older MinIO
            # enforce it; botocore 1.36+ sends a CRC instead. Send both.
            client.meta.events.register("before-call.s3.DeleteObjects", _content_md5)
        self.client = client

    def _call(self, what: str, operation: Any, *args: Any, **kwargs: Any) -> Any:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return operation(*args, **kwargs)
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            raise BucketError(f"{self.location}: {what} failed ({failure(exc)})") from exc

    def put(self, relative: str, source: Path) -> None:
        self._call(f"uploading {relative}", self.client.upload_file, str(source),
                   self.location.bucket, self.location.key(relative),
                   ExtraArgs={"CacheControl": cache_control(relative),
                              "ContentType": content_type(relative)})

    def delete(self, relatives: Iterable[str]) -> None:
        keys = [{"Key": self.location.key(r)} for r in relatives]
        for start in range(0, len(keys), 1000):  # the S3 limit per request
            self._call("deleting", self.client.delete_objects, Bucket=self.location.bucket,
                       Delete={"Objects": keys[start:start + 1000], "Quiet": True})

    def read(self, relative: str) -> bytes | None:
        """An object's bytes, or None when the bucket has no such object."""
        from botocore.exceptions import ClientError

        try:
            response = self._call(f"reading {relative}", self.client.get_object,
                                  Bucket=self.location.bucket, Key=self.location.key(relative))
        except BucketError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get(
                    "Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return self._call(f"reading {relative}", response["Body"].read)

    def download(self, relative: str, destination: Path) -> None:
        """Write an object to ``destination`` (a file of its own, streamed)."""
        self._call(f"downloading {relative}", self.client.download_file,
                   self.location.bucket, self.location.key(relative), str(destination))

    def list(self) -> set[str]:
        """Every object under the prefix, as a path relative to the tree."""
        return set(self.modified())

    def modified(self) -> dict[str, float]:
        """Every object under the prefix, relative to the tree, with when it was written
        (POSIX seconds)."""
        prefix = self.location.key("")
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call("listing", lambda: list(paginator.paginate(
            Bucket=self.location.bucket, Prefix=prefix)))
        return {obj["Key"][len(prefix):]: obj["LastModified"].timestamp()
                for page in pages for obj in page.get("Contents", [])}


#: The one file whose upload makes a new state visible (a commit's last).
TIMESTAMP = "metadata/timestamp.json"


def journal_path(paths: RepoPaths) -> Path:
    return paths.private / "bucket-journal.json"


@dataclass(frozen=True)
class Journal:
    """An upload in progress: the files a commit writes, in upload order, and the
    ``timestamp.json`` it started from (what undoing it restores: `custody.repository.catchup`)."""

    files: list[str]
    base: bytes | None = None

    def to_bytes(self) -> bytes:
        return json.dumps({"files": self.files, "base": self.base.decode()
                           if self.base is not None else None}).encode()

    @classmethod
    def load(cls, paths: RepoPaths) -> Journal | None:
        try:
            data = json.loads(journal_path(paths).read_text())
        except FileNotFoundError:
            return None
        if isinstance(data, list):  # the format before the base was kept
            return cls([str(f) for f in data])
        base = data.get("base")
        return cls([str(f) for f in data["files"]], base.encode() if base else None)


def begin(paths: RepoPaths, relatives: Sequence[str], base: bytes | None = None) -> None:
    """Journal the files (paths under ``public/``) about to be written, in upload order,
    and ``base``, the ``timestamp.json`` they replace.

    Written before the local tree changes, so that whatever kills the
    publisher, the next transaction (`replay`) uploads what reached the disk.
    """
    if relatives:
        write_atomic(journal_path(paths), Journal(list(relatives), base).to_bytes(), 0o600)


def upload(paths: RepoPaths, bucket: Bucket, relatives: Sequence[str]) -> None:
    """Upload ``relatives`` (paths under ``public/``) in order, journaled (module docstring)."""
    begin(paths, relatives)
    replay(paths, bucket)


def replay(paths: RepoPaths, bucket: Bucket,
           before_timestamp: Callable[[], None] | None = None) -> int:
    """Finish an interrupted upload, if the journal says there is one; files uploaded.

    ``before_timestamp`` runs just before ``timestamp.json`` goes up, the
    moment the new state becomes visible: a publisher sharing the bucket
    checks there that it still holds the shared lock.
    """
    journal = Journal.load(paths)
    if journal is None:
        return 0
    count = 0
    for relative in journal.files:
        source = paths.public / relative
        if source.exists():  # a later gc may have removed an old file: nothing to do
            if relative == TIMESTAMP and before_timestamp is not None:
                before_timestamp()
            bucket.put(relative, source)
            count += 1
    journal_path(paths).unlink()
    return count


def ordered_tree(paths: RepoPaths) -> list[str]:
    """Every file of the local tree in a safe upload order: targets, metadata, timestamp last."""
    targets = sorted(p.relative_to(paths.public).as_posix()
                     for p in paths.targets.rglob("*") if p.is_file() and
                     not p.name.startswith("."))
    metadata = [p for p in paths.metadata.glob("*.json") if not p.name.startswith(".")]
    metadata.sort(key=lambda p: write_order_of(p.name))
    return targets + [p.relative_to(paths.public).as_posix() for p in metadata]


def sync(paths: RepoPaths, bucket: Bucket, delete: bool = False) -> tuple[int, int, int]:
    """Make the bucket hold the local tree: upload what it lacks (safe order), then
    ``timestamp.json`` and ``root.json`` again. Returns (uploaded, deleted, left).

    What the bucket has and the tree does not is left (``left``), unless
    ``delete``: another publisher's older versions that a client in the
    middle of a refresh may still need (gc removes them after the retention
    window), or a previous tree's files.
    """
    replay(paths, bucket)
    present = bucket.list()
    wanted = ordered_tree(paths)
    mutable = {r for r in wanted if cache_control(r) == REVALIDATE}
    missing = [r for r in wanted if r not in present or r in mutable]
    upload(paths, bucket, missing)
    stale = sorted(present - set(wanted))
    if stale and delete:
        bucket.delete(stale)
        return len(missing), len(stale), 0
    return len(missing), 0, len(stale)


def check_bucket(public_url: str, endpoint_url: str | None) -> str:
    """At init: the bucket answers (created if missing, private); one line to show."""
    bucket = Bucket(BucketLocation.parse(public_url, endpoint_url))
    from botocore.exceptions import ClientError

    try:
        bucket.client.head_bucket(Bucket=bucket.location.bucket)
        made = ""
    except ClientError:
        bucket._call("creating the bucket", bucket.client.create_bucket,
                     Bucket=bucket.location.bucket)
        made = " (created, private: grant clients read access)"
    except Exception as exc:  # botocore's connection errors have no common base here
        raise RepositoryError(f"{bucket.location}: unreachable: {exc}") from exc
    bucket.list()
    return f"publishing the served tree to {bucket.location}{made}"


def open_bucket(public_url: str | None, endpoint_url: str | None) -> Bucket | None:
    if not public_url:
        return None
    return Bucket(BucketLocation.parse(public_url, endpoint_url))
