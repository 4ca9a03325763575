"""Registry authentication: ``WWW-Authenticate`` challenges, Bearer tokens per scope, Basic.

Docker's token flow: a registry answers 401 with ``Bearer realm=...,service=...,scope=...``;
the client asks the realm for a token (``GET realm?service=S&scope=A``, with Basic
credentials when it has some) and repeats the request with ``Authorization: Bearer``.
Tokens are cached per scope until shortly before they expire.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from paas.errors import RegistryError

DEFAULT_TOKEN_TTL_S = 60  # the token spec's default when expires_in is absent
TOKEN_EXPIRY_MARGIN_S = 10
MAX_TOKEN_RESPONSE_BYTES = 1 << 20
USER_AGENT = "paas-engine"
CREDENTIALS_HINT = ("pass --username and --password-stdin "
                    "(or set PAAS_REGISTRY_USER and PAAS_REGISTRY_PASSWORD)")
_PARAM_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: the scheme (lower-case) and its parameters."""

    scheme: str
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """``Bearer realm="...",service="..."`` -> Challenge; None when the header is not one."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest) and (match := _PARAM_RE.match(rest, pos)):
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        pos = match.end()
    return Challenge(scheme.lower(), params)


def basic_header(credentials: tuple[str, str]) -> str:
    user, password = credentials
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Authenticator:
    """The ``Authorization`` header for requests to one registry host, learnt from its challenges."""

    def __init__(
        self, host: str, credentials: tuple[str, str] | None, *, insecure: bool, timeout: float
    ) -> None:
        self.host = host
        self.credentials = credentials
        self._insecure = insecure
        self._timeout = timeout
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, monotonic expiry)
        self._bearer: Challenge | None = None  # the registry's last Bearer challenge
        self._basic = False

    def header(self, scope: str) -> str | None:
        """What to send with a request that needs ``scope``, or None (try without).

        Once the registry has asked for Bearer tokens, a token for a new scope (or to replace
        an expired one) is fetched before the request: a big upload refused with 401 halfway
        would have to be sent again.
        """
        if self._basic and self.credentials is not None:
            return basic_header(self.credentials)
        cached = self._tokens.get(scope)
        if (cached is None or cached[1] <= time.monotonic()) and self._bearer is not None:
            cached = self._tokens[scope] = self._fetch_token(self._bearer, scope)
        return None if cached is None else f"Bearer {cached[0]}"

    def answer(self, headers: list[str], scope: str) -> bool:
        """Prepare to answer a 401's challenges; False when nothing we have could satisfy them."""
        challenges = [c for c in map(parse_challenge, headers) if c is not None]
        for challenge in challenges:
            if challenge.scheme == "bearer" and challenge.params.get("realm"):
                self._bearer = challenge
                self._tokens[scope] = self._fetch_token(challenge, scope)
                return True
        for challenge in challenges:
            if challenge.scheme == "basic" and self.credentials is not None and not self._basic:
                self._basic = True
                return True
        return False

    def refused(self, what: str) -> RegistryError:
        """The error for a request still refused after we answered (or could not answer) the challenge."""
        if self.credentials is None:
            return RegistryError(f"{what}: registry {self.host} requires authentication: {CREDENTIALS_HINT}")
        return RegistryError(
            f"{what}: registry {self.host} refused user {self.credentials[0]!r}: check the "
            "password, and that the user may access this repository"
        )

    # --- tokens ---

    def _fetch_token(self, challenge: Challenge, scope: str) -> tuple[str, float]:
        realm = challenge.params["realm"]
        scopes = [scope]
        if challenge.params.get("scope") and challenge.params["scope"] != scope:
            scopes.append(challenge.params["scope"])
        query = [("scope", s) for s in scopes]
        if challenge.params.get("service"):
            query.insert(0, ("service", challenge.params["service"]))
        status, body = self._get(realm, query)
        if status in (401, 403):
            raise self._token_refused(realm)
        if status != 200:
            raise RegistryError(f"token server {realm} answered {status}; cannot authenticate to {self.host}")
        return _parse_token(realm, body)

    def _token_refused(self, realm: str) -> RegistryError:
        if self.credentials is None:
            return RegistryError(
                f"authentication required by {self.host} (token server {realm}): {CREDENTIALS_HINT}"
            )
        return RegistryError(
            f"authentication failed: token server {realm} refused user {self.credentials[0]!r} "
            f"for {self.host}: check the username and password"
        )

    def _get(self, realm: str, query: list[tuple[str, str]]) -> tuple[int, bytes]:
        url = urlsplit(realm)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise RegistryError(f"registry {self.host} names a token server {realm!r} that is not a URL")
        if url.scheme == "http" and not self._insecure:
            # Credentials and tokens must not cross the network in clear text unasked.
            raise RegistryError(f"registry {self.host} sends us to plain-HTTP token server {realm}; "
                                "use --insecure to allow it")
        path = (url.path or "/") + "?" + "&".join(p for p in (url.query, urlencode(query)) if p)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.credentials is not None:
            headers["Authorization"] = basic_header(self.credentials)
        conn = connection(url.scheme, url.netloc, self._timeout)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            return response.status, response.read(MAX_TOKEN_RESPONSE_BYTES)
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"token server {realm} is unreachable: {e}") from None
        finally:
            conn.close()


def connection(scheme: str, netloc: str, timeout: float) -> http.client.HTTPConnection:
    """A new connection to ``netloc``; HTTPS verifies against the system's trust store."""
    if scheme == "https":
        return http.client.HTTPSConnection(netloc, timeout=timeout, context=ssl.create_default_context())
    return http.client.HTTPConnection(netloc, timeout=timeout)


def _parse_token(realm: str, body: bytes) -> tuple[str, float]:
    try:
        doc = json.loads(body)
        token = doc.get("token") or doc.get("access_token")
        ttl = int(doc.get("expires_in") or DEFAULT_TOKEN_TTL_S)
    except (ValueError, TypeError, AttributeError):
        raise RegistryError(f"token server {realm} answered something that is not a token") from None
    if not isinstance(token, str) or not token:
        raise RegistryError(f"token server {realm} answered without a token")
    ttl = max(ttl, DEFAULT_TOKEN_TTL_S)
    return token, time.monotonic() + ttl - TOKEN_EXPIRY_MARGIN_S
