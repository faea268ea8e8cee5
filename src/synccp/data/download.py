"""Checksum-verified downloads into the synccp cache.

A download streams into a temporary file next to its destination, is hashed while it streams, and
is moved into place (`os.replace`) only when every given checksum matches, so the cache never holds
a partial or wrong file. Set `SYNCCP_OFFLINE=1` to forbid network access altogether.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

from synccp.data.datasets import DatasetError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TIMEOUT_S = 30.0


class DownloadError(DatasetError):
    """A download failed, was refused (offline) or did not match its checksum."""


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of the file at `path` (`algorithm`: "sha256" or "md5")."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def gunzip_sha256(path: Path) -> str:
    """SHA-256 of the decompressed content of the gzip file at `path`."""
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            for block in iter(lambda: f.read(_CHUNK), b""):
                digest.update(block)
    except (OSError, EOFError, zlib.error) as err:
        raise DownloadError(f"{path}: not a valid gzip file ({err})") from err
    return digest.hexdigest()


def download(urls: Sequence[str], dest: Path, *, sha256: str | None = None,
             md5: str | None = None, content_sha256: str | None = None) -> Path:
    """Fetch the first of `urls` that works into `dest`, verified; return `dest`.

    `sha256` / `md5` check the downloaded bytes; `content_sha256` checks the decompressed content
    of a gzip file. At least one checksum is required. Raises DownloadError listing every failure.
    """
    if not (sha256 or md5 or content_sha256):
        raise ValueError("download() needs at least one checksum")
    if os.environ.get("SYNCCP_OFFLINE", "") not in ("", "0"):
        raise DownloadError(f"not downloading {dest.name}: SYNCCP_OFFLINE is set")
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            _fetch_verified(url, dest, sha256=sha256, md5=md5, content_sha256=content_sha256)
            return dest
        except (OSError, DownloadError) as err:
            logger.warning("download of %s failed: %s", url, err)
            failures.append(f"{url}: {err}")
    raise DownloadError(f"could not download {dest.name}: " + "; ".join(failures))


def _fetch_verified(url: str, dest: Path, *, sha256: str | None, md5: str | None,
                    content_sha256: str | None) -> None:
    """Stream `url` into a temp file beside `dest`, verify, then move it into place."""
    logger.info("downloading %s -> %s", url, dest)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:
            for block in iter(lambda: resp.read(_CHUNK), b""):
                out.write(block)
                for digest in digests.values():
                    digest.update(block)
        for algorithm, expected in (("sha256", sha256), ("md5", md5)):
            if expected and digests[algorithm].hexdigest() != expected.lower():
                raise DownloadError(f"{algorithm} mismatch: expected {expected}, got "
                                    f"{digests[algorithm].hexdigest()}")
        if content_sha256 and gunzip_sha256(tmp) != content_sha256.lower():
            raise DownloadError(f"sha256 of the decompressed content is not {content_sha256}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("downloaded and verified %s", dest)
