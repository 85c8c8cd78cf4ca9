"""Artifact storage in an S3-compatible bucket (AWS S3, MinIO, Ceph), through boto3.

The client is configured the way every S3 client is: ``AWS_ENDPOINT_URL`` (MinIO, Ceph, a test server),
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, profiles and instance roles.

What is kept where, under ``s3://<bucket>/<prefix>/``:

- a file (``put_stream``) is one object at ``<key>``, with its SHA-256 in the object's metadata. S3 makes a PUT
  atomic (a reader sees the old object or the whole new one), so a file is uploaded straight to its key.
- a folder (``put_dir``) is one object per file under ``<key>/``, each with its SHA-256, and last a manifest
  ``<key>/.tuneforge-manifest.json`` listing every file with its size and SHA-256. A folder without its manifest
  (an upload in progress or interrupted) is never served; rewriting a folder deletes its manifest first.

Code that reads files by path gets them through :meth:`S3Storage.local_path`, which downloads into a cache folder
(``<data_dir>/storage-cache/<bucket>/<prefix>``) and checks every file's size and SHA-256 against what was
stored: a changed or corrupted object is refused with a :class:`~tuneforge.errors.StorageError`, never served.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from tuneforge.errors import ConfigError, StorageError
from tuneforge.store.storage import StoredObject, check_key, register_storage_scheme, remove_orphans
from tuneforge.utils.fs import atomic_write_json, storage_errors

__all__ = ["MANIFEST", "S3Storage"]

#: the object written last into a stored folder: the list of its files, sizes and SHA-256s
MANIFEST = ".tuneforge-manifest.json"
_FORMAT = "tuneforge-folder/1"
_CHUNK = 1024 * 1024
_MISSING = ("404", "NoSuchKey", "NotFound")


class S3Storage:
    """Artifacts in ``s3://bucket/prefix``, downloaded on demand into ``cache_dir`` and verified there."""

    #: cache leftovers of a process that crashed are removed once untouched for this long
    ORPHAN_SECONDS = 3600.0

    def __init__(self, bucket: str, prefix: str = "", *, cache_dir: Path, client: Any = None,
                 workers: int = 8, check: bool = True) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        if client is None:
            try:
                import boto3
            except ImportError:
                raise ConfigError(f"storage_url: {self.url} needs boto3, which is not installed",
                                  hint="pip install 'tuneforge[s3]'") from None
            client = boto3.client("s3")  # AWS_ENDPOINT_URL, AWS_* credentials and region, as every S3 client
        self.client = client
        self.workers = max(1, workers)
        root = Path(cache_dir) / bucket / self.prefix if self.prefix else Path(cache_dir) / bucket
        self.files_root, self.meta_root = root / "objects", root / "meta"
        self._verified: dict[str, Path] = {}  # keys checked against the bucket by this process
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        if check:
            with self._errors("head_bucket", ""):
                self.client.head_bucket(Bucket=bucket)
        if self.files_root.exists():
            remove_orphans(self.files_root, self.ORPHAN_SECONDS)

    # ------------------------------------------------------------------------------------------------- helpers
    def _remote(self, key: str) -> str:
        rel = check_key(key).as_posix()
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _cache_path(self, key: str) -> Path:
        return self.files_root.joinpath(*check_key(key).parts)

    def _meta_path(self, key: str) -> Path:
        parts = check_key(key).parts
        return self.meta_root.joinpath(*parts[:-1], parts[-1] + ".json")

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    @contextlib.contextmanager
    def _errors(self, what: str, key: str) -> Iterator[None]:
        """Turn boto3's errors into a :class:`StorageError` naming the object and what to check."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"{self.url}/{key}".rstrip("/")
        try:
            yield
        except NoCredentialsError as e:
            raise StorageError(f"S3 {what} {where}: no credentials",
                               hint="Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile).") from e
        except ClientError as e:
            err = e.response.get("Error", {})
            code = str(err.get("Code", "?"))
            hint = {"NoSuchBucket": f"Create the bucket {self.bucket!r} or fix TUNEFORGE_STORAGE_URL.",
                    "404": f"Create the bucket {self.bucket!r} or fix TUNEFORGE_STORAGE_URL.",
                    "AccessDenied": "Give these credentials read and write access to the bucket.",
                    "403": "Give these credentials read and write access to the bucket (or check the keys)."}
            raise StorageError(f"S3 {what} {where} failed: {code} {err.get('Message', '')}".rstrip(),
                               hint=hint.get(code, "Check AWS_ENDPOINT_URL, the credentials and the bucket.")) from e
        except BotoCoreError as e:
            raise StorageError(f"S3 {what} {where} failed: {e}",
                               hint="Check that AWS_ENDPOINT_URL points at a running S3 endpoint.") from e
        except Exception as e:
            if type(e).__name__ == "S3UploadFailedError":  # boto3's transfer wraps a ClientError in it
                raise StorageError(f"S3 upload {where} failed: {e}",
                                   hint="Check the bucket exists and these credentials may write to it.") from e
            raise

    def _head(self, remote: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=remote))
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code")) in _MISSING:
                return None
            raise

    def _get(self, remote: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=remote)["Body"].read())
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code")) in _MISSING:
                return None
            raise

    def _list(self, remote_dir: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=remote_dir):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys

    def _any(self, remote_dir: str) -> bool:
        return bool(self.client.list_objects_v2(Bucket=self.bucket, Prefix=remote_dir, MaxKeys=1).get("Contents"))

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i:i + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def _upload(self, path: Path, remote: str, sha256: str, size: int) -> None:
        self.client.upload_file(str(path), self.bucket, remote,
                                ExtraArgs={"Metadata": {"sha256": sha256, "size": str(size)}})

    def _download(self, remote: str, dest: Path, size: int | None, sha256: str | None, key: str) -> None:
        """Write the object to ``dest`` (a new file), refusing it unless its size and SHA-256 are as stored."""
        digest, got = hashlib.sha256(), 0
        body = self.client.get_object(Bucket=self.bucket, Key=remote)["Body"]
        with storage_errors(dest), open(dest, "wb") as f:
            while chunk := body.read(_CHUNK):
                got += len(chunk)
                digest.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if (size is not None and got != size) or (sha256 is not None and digest.hexdigest() != sha256):
            raise StorageError(
                f"{self.url}/{key}: the stored object does not match what was written (size {got}, SHA-256 "
                f"{digest.hexdigest()[:12]}…; expected size {size}, SHA-256 {(sha256 or '?')[:12]}…): it was "
                "changed or corrupted in the bucket, so it is not used.",
                hint="Restore the object from a backup, or train / upload it again.")

    def _install(self, key: str, staged: Path, meta: dict[str, Any]) -> Path:
        """Move ``staged`` (a file or folder beside the cache path) into place, then record ``meta``."""
        dest, meta_path = self._cache_path(key), self._meta_path(key)
        with storage_errors(dest):
            meta_path.unlink(missing_ok=True)
            if dest.is_dir() and not dest.is_symlink():
                trash = dest.with_name(f".{dest.name}.{os.urandom(4).hex()}.deleted")
                os.replace(dest, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(staged, dest)
            atomic_write_json(meta_path, meta)
        return dest

    def _cached(self, key: str, meta: dict[str, Any]) -> bool:
        try:
            return bool(json.loads(self._meta_path(key).read_text()) == meta)
        except (OSError, ValueError):
            return False

    def _forget(self, key: str) -> None:
        with self._guard:
            for k in [k for k in self._verified if k == key or k.startswith(key + "/")]:
                del self._verified[k]

    # ---------------------------------------------------------------------------------------------- the protocol
    def put_stream(self, key: str, stream: BinaryIO, *, max_bytes: int | None = None) -> StoredObject:
        remote, dest = self._remote(key), self._cache_path(key)
        with storage_errors(dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        digest, size = hashlib.sha256(), 0
        try:
            with storage_errors(dest), os.fdopen(fd, "wb") as f:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise OverflowError(size)  # nothing was sent to the bucket yet
                    digest.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            sha = digest.hexdigest()
            with self._errors("upload", key):
                self._upload(Path(tmp), remote, sha, size)
            with self._lock(key):
                self._verified[key] = self._install(key, Path(tmp), {"kind": "file", "sha256": sha, "size": size})
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredObject(key, size, sha)

    def open(self, key: str) -> BinaryIO:
        return open(self.local_path(key), "rb")

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        with self.open(key) as f:
            while chunk := f.read(_CHUNK):
                yield chunk

    def local_path(self, key: str) -> Path:
        """The object's verified copy in the cache (downloaded the first time, or when the bucket holds another
        version). A key with nothing stored gives a path that does not exist, as :class:`LocalStorage` does; a
        folder without its manifest (half uploaded) is a :class:`StorageError`."""
        remote, dest = self._remote(key), self._cache_path(key)
        with self._lock(key):
            known = self._verified.get(key)
            if known is not None and known.exists():
                return known
            with self._errors("download", key):
                head = self._head(remote)
                if head is not None:
                    self._fetch_file(key, remote, head)
                else:
                    manifest = self._get(f"{remote}/{MANIFEST}")
                    if manifest is None:
                        if self._any(remote + "/"):
                            raise StorageError(
                                f"{self.url}/{key} is incomplete: its files are in the bucket but not its manifest "
                                f"({MANIFEST}, written last), so an upload is in progress or was interrupted.",
                                hint="Wait for the upload to finish, or publish the folder again.")
                        return dest
                    self._fetch_dir(key, remote, manifest)
            self._verified[key] = dest
            return dest

    def _fetch_file(self, key: str, remote: str, head: dict[str, Any]) -> None:
        size = int(head["ContentLength"])
        sha = (head.get("Metadata") or {}).get("sha256")
        dest = self._cache_path(key)
        if sha and self._cached(key, {"kind": "file", "sha256": sha, "size": size}) and dest.is_file() \
                and dest.stat().st_size == size:
            return
        with storage_errors(dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
            os.close(fd)
        try:
            self._download(remote, Path(tmp), size, sha, key)
            if not sha:  # written by another tool: keep what was read
                sha = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
            self._install(key, Path(tmp), {"kind": "file", "sha256": sha, "size": size})
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _fetch_dir(self, key: str, remote: str, manifest: bytes) -> None:
        meta = {"kind": "folder", "manifest_sha256": hashlib.sha256(manifest).hexdigest()}
        dest = self._cache_path(key)
        if self._cached(key, meta) and dest.is_dir():
            return
        files = _read_manifest(manifest, f"{self.url}/{key}")
        with storage_errors(dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
        try:
            def one(entry: dict[str, Any]) -> None:
                target = staging.joinpath(*PurePosixPath(entry["path"]).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                self._download(f"{remote}/{entry['path']}", target, entry["size"], entry["sha256"],
                               f"{key}/{entry['path']}")

            with ThreadPoolExecutor(self.workers) as pool:
                list(pool.map(one, files))
            self._install(key, staging, meta)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def put_dir(self, key: str, folder: Path) -> int:
        """Upload every file of ``folder`` under ``key``, then its manifest; the folder is then moved into the
        cache (it is what the bucket holds) or removed, as :class:`LocalStorage` moves it."""
        folder, remote = Path(folder), self._remote(key)
        paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)

        def one(p: Path) -> dict[str, Any]:
            rel = p.relative_to(folder).as_posix()
            digest, size = hashlib.sha256(), 0
            with storage_errors(p), open(p, "rb") as f:
                while chunk := f.read(_CHUNK):
                    size += len(chunk)
                    digest.update(chunk)
            with self._errors("upload", f"{key}/{rel}"):
                self._upload(p, f"{remote}/{rel}", digest.hexdigest(), size)
            return {"path": rel, "size": size, "sha256": digest.hexdigest()}

        with self._lock(key):
            self._forget(key)
            with self._errors("upload", key):
                old = self._get(f"{remote}/{MANIFEST}")
                if old is not None:  # the folder is rewritten: incomplete until the new manifest is in place
                    self.client.delete_object(Bucket=self.bucket, Key=f"{remote}/{MANIFEST}")
            with ThreadPoolExecutor(self.workers) as pool:
                files = list(pool.map(one, paths))
            body = json.dumps({"format": _FORMAT, "files": files, "size": sum(f["size"] for f in files)},
                              indent=1).encode()
            with self._errors("upload", key):
                if old is not None:  # files of the old version that the new one does not have
                    kept = {f["path"] for f in files}
                    self._delete_keys([f"{remote}/{f['path']}" for f in _read_manifest(old, key)
                                       if f["path"] not in kept])
                self.client.put_object(Bucket=self.bucket, Key=f"{remote}/{MANIFEST}", Body=body,
                                       ContentType="application/json")
            # the folder is what the bucket now holds: on the same disk it becomes the cached copy, else it is
            # removed and downloaded when first needed (the bucket is complete either way)
            dest = self._cache_path(key)
            staged = dest.with_name(f".{dest.name}.{os.urandom(4).hex()}.partial")
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(folder, staged)
            except OSError:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                try:
                    self._verified[key] = self._install(
                        key, staged, {"kind": "folder", "manifest_sha256": hashlib.sha256(body).hexdigest()})
                except StorageError:
                    shutil.rmtree(staged, ignore_errors=True)
        return sum(int(f["size"]) for f in files)

    def delete(self, key: str) -> None:
        remote = self._remote(key)
        with self._lock(key):
            self._forget(key)
            with self._errors("delete", key):
                if self._head(remote) is not None:
                    self.client.delete_object(Bucket=self.bucket, Key=remote)
                keys = self._list(remote + "/")
                manifests = [k for k in keys if k.rsplit("/", 1)[-1] == MANIFEST]
                self._delete_keys(manifests)  # first, so that no reader sees a folder as complete meanwhile
                self._delete_keys([k for k in keys if k not in set(manifests)])
            dest = self._cache_path(key)
            with storage_errors(dest):
                self._meta_path(key).unlink(missing_ok=True)
                shutil.rmtree(self._meta_path(key).with_suffix(""), ignore_errors=True)
                if dest.is_dir() and not dest.is_symlink():
                    trash = dest.with_name(f".{dest.name}.{os.urandom(4).hex()}.deleted")
                    os.replace(dest, trash)
                    shutil.rmtree(trash, ignore_errors=True)
                else:
                    dest.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        """Whether a whole file or folder is stored at ``key`` (a folder without its manifest is not)."""
        known = self._verified.get(key)
        if known is not None and known.exists():
            return True
        remote = self._remote(key)
        with self._errors("read", key):
            return self._head(remote) is not None or self._head(f"{remote}/{MANIFEST}") is not None


def _from_url(url: str, data_dir: Path) -> S3Storage:
    """``s3://bucket/prefix``, its downloads cached under ``<data_dir>/storage-cache``."""
    parts = urlsplit(url)
    if not parts.netloc:
        raise ConfigError(f"storage_url: {url!r} names no bucket", hint="Write it as s3://bucket/prefix.")
    return S3Storage(parts.netloc, unquote(parts.path).strip("/"), cache_dir=data_dir / "storage-cache")


register_storage_scheme("s3", _from_url)


def _read_manifest(body: bytes, where: str) -> list[dict[str, Any]]:
    """The manifest's file list, refused when it is not one TuneForge wrote (or names a path outside the folder)."""
    files: Any = None
    try:
        data = json.loads(body)
        files = data["files"] if data.get("format") == _FORMAT else None
        ok = isinstance(files, list) and all(
            isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("size"), int)
            and isinstance(f.get("sha256"), str) for f in files)
    except (ValueError, AttributeError, KeyError, TypeError):
        ok = False
    if not ok or not isinstance(files, list):
        raise StorageError(f"{where}/{MANIFEST} is not a TuneForge folder manifest ({_FORMAT})",
                           hint="Publish the folder again with TuneForge.")
    for f in files:
        try:
            check_key(f["path"])
        except StorageError:
            raise StorageError(f"{where}/{MANIFEST} names a file outside its folder: {f['path']!r}") from None
    return list(files)
