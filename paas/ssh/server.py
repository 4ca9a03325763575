"""The paramiko SSH server: host key, public-key auth against the Store, one thread per client."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

from paas.config import Settings
from paas.core.keys import fingerprint
from paas.errors import PaasError, StateError
from paas.ssh import pty, session
from paas.store import Store

log = logging.getLogger(__name__)

SSH_USER = "git"
LISTEN_BACKLOG = 128
ACCEPT_POLL_S = 0.5
HANDSHAKE_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
# Only GIT_PROTOCOL may come from the client: it lets git negotiate protocol v2.
CLIENT_ENV = frozenset({"GIT_PROTOCOL"})


def load_host_key(path: Path) -> paramiko.Ed25519Key:
    """The server's ed25519 host key, generated (mode 0600) on first use and reused after."""
    if not path.exists():
        _generate_host_key(path)
    try:
        return paramiko.Ed25519Key.from_private_key_file(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise StateError(f"cannot load the SSH host key {path}: {exc}") from None


def _generate_host_key(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    try:
        os.link(tmp, path)  # never replace a key another process created meanwhile
    except FileExistsError:
        pass  # that other key wins; clients see one stable host key
    finally:
        tmp.unlink()


class _Auth(paramiko.ServerInterface):
    """Per-connection answers to the client: who it is, and what each channel asked to run."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.key_name: str | None = None
        self.lock = threading.Lock()
        self.requests: dict[int, str | None] = {}
        self.envs: dict[int, dict[str, str]] = {}
        self.terminals: dict[int, pty.Terminal] = {}
        self.ready: dict[int, threading.Event] = {}

    def event(self, chanid: int) -> threading.Event:
        with self.lock:
            return self.ready.setdefault(chanid, threading.Event())

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if username != SSH_USER:
            return AUTH_FAILED
        try:
            found = self.store.key_by_fingerprint(fingerprint(key.asbytes()))
        except PaasError as exc:
            log.error("key lookup failed: %s", exc)
            return AUTH_FAILED
        if found is None:
            return AUTH_FAILED
        self.key_name = found.name
        return AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return OPEN_SUCCEEDED
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.requests[channel.get_id()] = command.decode(errors="replace")
        self.event(channel.get_id()).set()
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        self.requests[channel.get_id()] = None
        self.event(channel.get_id()).set()
        return True

    def check_channel_pty_request(
        self, channel: paramiko.Channel, term: bytes, width: int, height: int,
        pixelwidth: int, pixelheight: int, modes: bytes,
    ) -> bool:
        self.terminals[channel.get_id()] = pty.Terminal(
            term.decode(errors="replace"), width, height, modes)
        return True

    def check_channel_window_change_request(
        self, channel: paramiko.Channel, width: int, height: int, pixelwidth: int,
        pixelheight: int,
    ) -> bool:
        terminal = self.terminals.get(channel.get_id())
        if terminal is None:
            return False
        terminal.resize(width, height)
        return True

    def check_channel_env_request(
        self, channel: paramiko.Channel, name: bytes, value: bytes
    ) -> bool:
        key = name.decode(errors="replace")
        if key not in CLIENT_ENV:
            return False
        self.envs.setdefault(channel.get_id(), {})[key] = value.decode(errors="replace")
        return True


Planner = Callable[[Settings, Store, str, str], session.Plan]


class SSHServer:
    """Listens on (host, settings.ssh_port); serve_forever() until shutdown().

    `planner` maps (settings, store, command line, key name) to what runs: session.plan, the
    one dispatcher; tests of the terminal plumbing pass one that runs a probe instead.
    """

    def __init__(
        self, settings: Settings, host: str = "0.0.0.0", planner: Planner = session.plan
    ) -> None:
        self.settings = settings
        self.planner = planner
        self.host_key = load_host_key(settings.host_key_path)
        self.store = Store(settings.db_path)
        try:
            self.sock = socket.create_server((host, settings.ssh_port), backlog=LISTEN_BACKLOG)
        except OSError as exc:
            raise StateError(f"cannot listen on {host}:{settings.ssh_port}: {exc}") from None
        self._stop = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def serve_forever(self, ready: Callable[[], None] | None = None) -> None:
        self.sock.settimeout(ACCEPT_POLL_S)
        if ready:
            ready()
        try:
            while not self._stop.is_set():
                try:
                    client, addr = self.sock.accept()
                except TimeoutError:
                    continue
                threading.Thread(
                    target=self._connection, args=(client, addr), daemon=True
                ).start()
        finally:
            self.sock.close()

    def shutdown(self) -> None:
        self._stop.set()

    def _connection(self, client: socket.socket, addr: tuple[str, int]) -> None:
        client.settimeout(None)
        transport = paramiko.Transport(client)
        transport.add_server_key(self.host_key)
        auth = _Auth(self.store)
        try:
            transport.start_server(server=auth)
            while transport.is_active():
                channel = transport.accept(timeout=ACCEPT_POLL_S)
                if channel is not None:
                    threading.Thread(
                        target=self._channel, args=(auth, channel), daemon=True
                    ).start()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            log.debug("connection from %s ended: %s", addr[0], exc)
        finally:
            transport.close()

    def _channel(self, auth: _Auth, channel: paramiko.Channel) -> None:
        chanid = channel.get_id()
        if not auth.event(chanid).wait(REQUEST_TIMEOUT_S):
            channel.close()
            return
        command = auth.requests.get(chanid)
        terminal = auth.terminals.get(chanid)
        try:
            status = self._run(auth, channel, command, terminal)
            session.finish(channel, status)
        finally:
            if terminal is not None:
                terminal.close()

    def _run(self, auth: _Auth, channel: paramiko.Channel, command: str | None,
             terminal: pty.Terminal | None) -> int:
        try:
            if command is None:
                raise PaasError(session.USAGE.rstrip())
            p = self.planner(self.settings, self.store, command, auth.key_name or "")
            return session.run(channel, p, auth.envs.get(channel.get_id(), {}), terminal)
        except PaasError as exc:
            message = str(exc)
            if not message.startswith("Usage"):
                message = f"error: {message}"
            _send_stderr(channel, message + "\n")
            return 1
        except OSError as exc:
            log.error("command %r failed: %s", command, exc)
            _send_stderr(channel, f"error: cannot run the command: {exc}\n")
            return 1


def _send_stderr(channel: paramiko.Channel, text: str) -> None:
    try:
        channel.sendall_stderr(text.encode())
    except OSError:
        return  # the client left; nothing more to tell it


def serve(
    settings: Settings, ready: Callable[[], None] | None = None, host: str = "0.0.0.0"
) -> None:
    """Run the SSH server in this thread until the process is stopped."""
    SSHServer(settings, host).serve_forever(ready)
