"""HTTP to one registry: keep-alive connections per origin, auth retries, redirects, errors.

Everything the network or the registry can throw is turned into RegistryError here,
with the registry's own error code and message (``{"errors": [...]}``) when it sent one.
Request bodies are bytes or a file; a file goes out with ``socket.sendfile``.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import ssl
from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO
from urllib.parse import urlsplit

from paas.engine.registry_auth import USER_AGENT, Authenticator, connection
from paas.errors import RegistryError

MAX_REDIRECTS = 5
MAX_ERROR_BODY_BYTES = 64 << 10
_REDIRECTS = (301, 302, 303, 307, 308)
# A keep-alive connection the server closed while idle fails like this on its next use.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

Body = bytes | BinaryIO | None


class RegistrySession:
    """Requests to one registry host (``host[:port]``), authenticated for a scope per request."""

    def __init__(
        self,
        host: str,
        *,
        insecure: bool,
        credentials: tuple[str, str] | None,
        timeout: float,
        counts: collections.Counter[str],
    ) -> None:
        self.host = host
        self.scheme = "http" if insecure else "https"
        self.auth = Authenticator(host, credentials, insecure=insecure, timeout=timeout)
        self._insecure = insecure
        self._timeout = timeout
        self._counts = counts
        self._conns: dict[tuple[str, str], http.client.HTTPConnection] = {}
        self._last: dict[tuple[str, str], http.client.HTTPResponse] = {}

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        self._last.clear()

    def request(
        self,
        method: str,
        target: str,
        *,
        scope: str,
        what: str,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        size: int = 0,
    ) -> http.client.HTTPResponse:
        """Send, answering one auth challenge and following GET/HEAD redirects.

        ``target`` is a path on this registry or an absolute URL (upload locations).
        The caller reads the response to its end (or calls ``discard``) before the next request.
        """
        rewind = _rewinder(body)
        for attempt in range(2):
            response = self._follow(method, target, scope, what, dict(headers or {}), body, size)
            if response.status != 401:
                return response
            challenges = response.headers.get_all("WWW-Authenticate") or []
            self.discard(response)
            if attempt or not self.auth.answer(challenges, scope):
                raise self.auth.refused(what)
            rewind()
        raise AssertionError("unreachable")

    def _follow(
        self, method: str, target: str, scope: str, what: str, headers: dict[str, str],
        body: Body, size: int,
    ) -> http.client.HTTPResponse:
        origin, path = self._split(target, what)
        for _ in range(MAX_REDIRECTS + 1):
            send = dict(headers)
            if origin == (self.scheme, self.host):
                # Our credentials and tokens go to the registry only, never to where it redirects.
                auth = self.auth.header(scope)
                if auth is not None:
                    send["Authorization"] = auth
            response = self._send(origin, method, path, send, body, size, what)
            location = response.headers.get("Location")
            if method not in ("GET", "HEAD") or response.status not in _REDIRECTS or not location:
                return response
            self.discard(response)
            origin, path = self._split(self._absolute(origin, location), what)
        raise RegistryError(f"{what}: registry {self.host} redirects more than {MAX_REDIRECTS} times")

    def _absolute(self, origin: tuple[str, str], location: str) -> str:
        if urlsplit(location).scheme:
            return location
        return f"{origin[0]}://{origin[1]}{location if location.startswith('/') else '/' + location}"

    def _split(self, target: str, what: str) -> tuple[tuple[str, str], str]:
        url = urlsplit(target)
        if not url.scheme:
            return (self.scheme, self.host), target
        if url.scheme not in ("http", "https") or not url.netloc:
            raise RegistryError(f"{what}: registry {self.host} sent an unusable URL {target!r}")
        if url.scheme == "http" and not self._insecure:
            raise RegistryError(f"{what}: registry {self.host} sends us to plain-HTTP {target}; "
                                "use --insecure to allow it")
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        return (url.scheme, url.netloc), path

    # --- connections ---

    def _send(
        self, origin: tuple[str, str], method: str, path: str, headers: dict[str, str], body: Body,
        size: int, what: str,
    ) -> http.client.HTTPResponse:
        headers.setdefault("User-Agent", USER_AGENT)
        rewind = _rewinder(body)
        self._counts[method] += 1
        reused = origin in self._conns and self._reusable(origin)
        try:
            try:
                return self._attempt(origin, method, path, headers, body, size)
            except _STALE:
                if not reused:
                    raise
                self._drop(origin)
                rewind()
                return self._attempt(origin, method, path, headers, body, size)
        except ssl.SSLCertVerificationError as e:
            self._drop(origin)
            raise RegistryError(
                f"{what}: the TLS certificate of {origin[1]} is not trusted ({e.verify_message}): "
                "add its CA to the system's trust store, or pass --insecure for plain HTTP"
            ) from None
        except ssl.SSLError as e:
            self._drop(origin)
            raise RegistryError(
                f"{what}: TLS with {origin[1]} failed ({e.reason or e}); if it is a plain-HTTP "
                "registry, pass --insecure (or set PAAS_REGISTRY_INSECURE=1)"
            ) from None
        except (OSError, http.client.HTTPException) as e:
            self._drop(origin)
            raise RegistryError(f"{what}: registry {origin[1]} is unreachable: {_describe(e)}") from None

    def _attempt(
        self, origin: tuple[str, str], method: str, path: str, headers: dict[str, str], body: Body,
        size: int,
    ) -> http.client.HTTPResponse:
        conn = self._connection(origin)
        if body is None or isinstance(body, bytes):
            conn.request(method, path, body=body, headers=headers)
        else:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in {**headers, "Content-Length": str(size)}.items():
                conn.putheader(name, value)
            conn.endheaders()
            assert conn.sock is not None
            conn.sock.sendfile(body, body.tell(), size)
        response = conn.getresponse()
        self._last[origin] = response
        return response

    def _reusable(self, origin: tuple[str, str]) -> bool:
        """A connection can take a new request once the last response on it was read to the end."""
        last = self._last.get(origin)
        if last is None or last.isclosed():
            return True
        self._drop(origin)
        return False

    def _connection(self, origin: tuple[str, str]) -> http.client.HTTPConnection:
        if origin in self._conns and self._reusable(origin):
            return self._conns[origin]
        conn = self._conns[origin] = connection(*origin, self._timeout)
        return conn

    def _drop(self, origin: tuple[str, str]) -> None:
        conn = self._conns.pop(origin, None)
        self._last.pop(origin, None)
        if conn is not None:
            conn.close()

    def discard(self, response: http.client.HTTPResponse) -> None:
        """Finish with a response: read a small rest so the connection stays usable, else close."""
        with contextlib.suppress(OSError, http.client.HTTPException):
            if response.length is not None and response.length <= MAX_ERROR_BODY_BYTES:
                response.read()
        if not response.isclosed():
            for origin, last in list(self._last.items()):
                if last is response:
                    self._drop(origin)

    @contextlib.contextmanager
    def streaming(self, response: http.client.HTTPResponse, what: str) -> Iterator[http.client.HTTPResponse]:
        """Hand a response body to a reader; a reader that stops early costs the connection."""
        try:
            yield response
        except (ConnectionError, TimeoutError, ssl.SSLError, http.client.HTTPException) as e:
            raise RegistryError(f"{what}: the download from {self.host} broke off: {_describe(e)}") from None
        finally:
            self.discard(response)


def _rewinder(body: Body) -> Callable[[], object]:
    """What puts a file body back where it is now, to send it again (bytes need nothing)."""
    if body is None or isinstance(body, bytes):
        return lambda: None
    start = body.tell()
    return lambda: body.seek(start)


def _describe(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is it running, and on that port?)"
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


def error_detail(response: http.client.HTTPResponse) -> str:
    """The registry's ``errors`` list as ``CODE: message``, else the HTTP status line."""
    try:
        body = response.read(MAX_ERROR_BODY_BYTES)
    except (OSError, http.client.HTTPException):
        body = b""
    try:
        errors = json.loads(body)["errors"]
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".rstrip(": ") for e in errors]
    except (ValueError, KeyError, TypeError, AttributeError):
        parts = []
    return "; ".join(parts) or f"{response.status} {response.reason}"


def check(
    session: RegistrySession, response: http.client.HTTPResponse, what: str, ok: tuple[int, ...]
) -> None:
    """Raise RegistryError unless the response status is one of ``ok``."""
    if response.status in ok:
        return
    detail = error_detail(response)
    session.discard(response)
    if response.status == 403:
        raise RegistryError(f"{what}: registry {session.host} denied access: {detail}")
    raise RegistryError(f"{what}: registry {session.host} answered {response.status}: {detail}")
