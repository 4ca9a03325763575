"""A real Registry v2 for tests and benchmarks: the Debian ``docker-registry`` on loopback.

``start_registry(tmp)`` runs ``/usr/bin/docker-registry serve`` on 127.0.0.1 and a
free port, with its config and storage under ``tmp``; ``.stop()`` ends it by PID; with
``auth=BasicAuth(users)`` it demands Basic credentials (an htpasswd file).
``start_token_server(tmp, users)`` runs a small Docker-token-auth server (RS256
JWTs with an ``x5c`` header, signed by a key made here) whose ``.auth`` is passed
to ``start_registry`` to make the registry demand Bearer tokens.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hmac
import http.client
import ipaddress
import json
import os
import secrets
import ssl
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from testkit import free_port, stop_process

REGISTRY_BINARY = "/usr/bin/docker-registry"
START_TIMEOUT_S = 20.0
TOKEN_TTL_S = 300
SERVICE = "paas-test-registry"
ISSUER = "paas-test-token-issuer"


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """What the registry's ``auth: token:`` section needs to trust a token server."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """Users and passwords for the registry's ``auth: htpasswd:`` section (Basic challenges)."""

    users: Mapping[str, str]


@dataclass
class RegistryServer:
    """A running docker-registry; ``host`` is ``127.0.0.1:PORT``, ``storage`` its data root."""

    host: str
    storage: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    ca_path: Path | None = None  # with tls=True: the self-signed certificate to trust

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (tests tamper with it)."""
        hex_ = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"

    def stop(self) -> None:
        stop_process(self.process)


def _certificate(common_name: str, ip: str | None = None) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A fresh key and a self-signed CA certificate valid for a day (for ip, when given)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if ip is not None:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address(ip))])
        builder = builder.add_extension(san, critical=False)
    return key, builder.sign(key, hashes.SHA256())


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A key and a certificate for 127.0.0.1, for a registry that speaks HTTPS."""
    key, cert = _certificate("127.0.0.1", ip="127.0.0.1")
    key_path, cert_path = tmp / "tls.key", tmp / "tls.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _config(host: str, storage: Path, auth: TokenAuth | BasicAuth | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": host, "secret": secrets.token_hex(16)},
        "health": {"storagedriver": {"enabled": False}},
    }
    if isinstance(auth, BasicAuth):
        htpasswd = storage.parent / "htpasswd"
        htpasswd.write_text("".join(
            f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
            for user, password in auth.users.items()
        ))
        config["auth"] = {"htpasswd": {"realm": "paas-test", "path": str(htpasswd)}}
    elif auth is not None:
        config["auth"] = {"token": {
            "realm": auth.realm, "service": auth.service, "issuer": auth.issuer,
            "rootcertbundle": str(auth.rootcertbundle),
        }}
    return config


def start_registry(
    tmp: Path, auth: TokenAuth | BasicAuth | None = None, *, tls: bool = False
) -> RegistryServer:
    """Start docker-registry on a free loopback port; the caller must ``.stop()`` it.

    With ``tls`` it speaks HTTPS with a self-signed certificate (``.ca_path``).
    """
    tmp.mkdir(parents=True, exist_ok=True)
    host = f"127.0.0.1:{free_port()}"
    storage = tmp / "storage"
    storage.mkdir(exist_ok=True)
    config = _config(host, storage, auth)
    ca_path = None
    if tls:
        key_path, ca_path = _self_signed(tmp)
        config["http"]["tls"] = {"certificate": str(ca_path), "key": str(key_path)}
    config_path = tmp / "config.yml"
    # YAML is a superset of JSON, so the config needs no YAML writer.
    config_path.write_text(json.dumps(config, indent=2))
    log_path = tmp / "registry.log"
    # REGISTRY_* variables would override the config file; the child gets none.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([REGISTRY_BINARY, "serve", str(config_path)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    server = RegistryServer(host, storage, log_path, proc, ca_path)
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: RegistryServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {server.log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = (http.client.HTTPSConnection(server.host, timeout=1, context=_unverified())
                    if server.ca_path else http.client.HTTPConnection(server.host, timeout=1))
            try:
                conn.request("GET", "/v2/")
                if conn.getresponse().status in (200, 401):
                    return
            finally:
                conn.close()
        time.sleep(0.05)
    raise TimeoutError(f"docker-registry on {server.host} did not answer in {START_TIMEOUT_S} s")


def _unverified() -> ssl.SSLContext:
    # Only to see that the port answers; the tests themselves verify the certificate.
    return ssl._create_unverified_context()


# --- the token server ---


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenIssuer:
    """Signs registry tokens; the certificate is the registry's rootcertbundle."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls) -> TokenIssuer:
        return cls(*_certificate("paas test token issuer"))

    def token(self, subject: str, access: list[dict[str, Any]]) -> str:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + TOKEN_TTL_S,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


def _access(scopes: list[str]) -> list[dict[str, Any]]:
    """Grant every action asked for (this test server has one user who may do anything)."""
    access = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
    return access


@dataclass
class TokenServer:
    """A running token server; ``.auth`` configures a registry to trust it."""

    auth: TokenAuth
    users: Mapping[str, str]
    issuer: TokenIssuer
    httpd: ThreadingHTTPServer
    thread: threading.Thread
    requests: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def _check_basic(header: str | None, users: Mapping[str, str]) -> str | None:
    """The user named by a valid Basic header, "" for none, None for wrong credentials."""
    if not header:
        return ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    expected = users.get(user)
    if expected is None or not hmac.compare_digest(expected, password):
        return None
    return user


def _handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            query = parse_qs(urlsplit(self.path).query)
            server.requests.append(self.path)
            user = _check_basic(self.headers.get("Authorization"), server.users)
            if user is None or query.get("service") != [SERVICE]:
                self._reply(401, {"details": "bad credentials"})
                return
            # An anonymous caller gets a valid token that grants nothing.
            access = _access(query.get("scope", [])) if user else []
            self._reply(200, {"token": server.issuer.token(user, access), "expires_in": TOKEN_TTL_S})

        def _reply(self, status: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def start_token_server(tmp: Path, users: Mapping[str, str]) -> TokenServer:
    """Serve ``GET /token`` on a free loopback port in a thread; the caller must ``.stop()`` it."""
    tmp.mkdir(parents=True, exist_ok=True)
    issuer = TokenIssuer.create()
    bundle = tmp / "token-root.pem"
    bundle.write_bytes(issuer.cert.public_bytes(serialization.Encoding.PEM))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = httpd.server_address[1]
    auth = TokenAuth(f"http://127.0.0.1:{port}/token", SERVICE, ISSUER, bundle)
    thread = threading.Thread(target=httpd.serve_forever, name="token-server", daemon=True)
    server = TokenServer(auth, dict(users), issuer, httpd, thread)
    httpd.RequestHandlerClass = _handler(server)
    thread.start()
    return server
