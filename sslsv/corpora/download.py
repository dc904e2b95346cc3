"""Fetching a published file over HTTPS, atomically, checked against its MD5."""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from pathlib import Path

from sslsv.datadir.io import PathLike
from sslsv.errors import DataError
from sslsv.fileio import atomic_write

log = logging.getLogger(__name__)


def file_md5(path: PathLike) -> str:
    """Hex MD5 of a file, read in blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, dest: PathLike, md5: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` (HTTPS only) to ``dest``, atomically, checking its MD5.

    ``dest`` appears only when the whole file arrived and its checksum matches; any failure
    (offline, HTTP error, wrong checksum) is a :class:`DataError` naming the URL.
    """
    dest = Path(dest)
    if not url.startswith("https://"):
        raise DataError(f"{url}: refusing to download over anything but HTTPS")
    log.info("downloading %s -> %s", url, dest)
    digest = hashlib.md5(usedforsecurity=False)
    with atomic_write(dest, "wb") as out:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                for block in iter(lambda: response.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
        except OSError as e:  # URLError, HTTPError, timeouts and resets are all OSErrors
            plain_url_error = isinstance(e, urllib.error.URLError) and not isinstance(
                e, urllib.error.HTTPError
            )
            raise DataError(
                f"cannot download {url}: {e.reason if plain_url_error else e} (is this machine "
                f"online?); nothing written. Fetch the file elsewhere and put it at {dest}, or "
                "pass its path"
            ) from None
        if digest.hexdigest() != md5:
            raise DataError(
                f"{url}: MD5 {digest.hexdigest()} does not match the published {md5}; nothing "
                f"written to {dest} (a partial or changed download?)"
            )
    return dest
