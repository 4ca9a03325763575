"""ADD's URL sources: fetch one http(s) URL into a file, with a timeout and a clear error.

Docker's rules: the file is saved with mode 0600, its mtime from the Last-Modified header when
there is one, and it is never unpacked even when it is an archive. The cache keys on the
fetched content, so every build fetches again.
"""

from __future__ import annotations

import hashlib
import posixpath
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from paas.errors import BuildError

FETCH_TIMEOUT = 10.0
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Fetched:
    path: Path  # where the content was written
    digest: str  # "sha256:<hex>" of the content
    mtime: int | None  # from Last-Modified


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def url_basename(url: str) -> str:
    """The file name ADD gives a URL's content when the destination is a directory."""
    name = posixpath.basename(urllib.parse.urlsplit(url).path.rstrip("/"))
    if not name or name in (".", ".."):
        raise BuildError(f"ADD {url}: cannot determine a file name from the URL; name the destination")
    return name


def fetch(url: str, out: Path, timeout: float = FETCH_TIMEOUT) -> Fetched:
    """Download `url` into `out`; BuildError "ADD <url>: cannot fetch: <reason>" on any failure."""
    # Imported here: urllib.request brings http.client, email and ssl (~30 ms at start-up),
    # which only an ADD of a URL needs, not every build.
    import http.client
    import urllib.error
    import urllib.request

    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(out, "wb") as f:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                f.write(chunk)
            modified = response.headers.get("Last-Modified")
    except urllib.error.HTTPError as error:
        raise BuildError(f"ADD {url}: cannot fetch: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise BuildError(f"ADD {url}: cannot fetch: {error.reason}") from None
    except (OSError, ValueError, http.client.HTTPException) as error:
        raise BuildError(f"ADD {url}: cannot fetch: {error}") from None
    out.chmod(0o600)
    return Fetched(out, "sha256:" + digest.hexdigest(), _mtime(modified))


def _mtime(header: str | None) -> int | None:
    if not header:
        return None
    import email.utils

    try:
        return int(email.utils.parsedate_to_datetime(header).timestamp())
    except (TypeError, ValueError):
        return None
