"""Run `paas` commands in-process over a real Store in a temp PAAS_HOME, as the host operator or
as an SSH user (PAAS_SSH_USER), and capture exit code, stdout and stderr."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from testkit import make_keypair

from paas.cli.context import SSH_USER_ENV
from paas.cli.main import main
from paas.store import Store


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


class Paas:
    """`paas ARGS...` as the host operator (user=None) or an SSH key's user."""

    def __init__(self, home: Path, store: Store, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str], env: Mapping[str, str] | None = None) -> None:
        """`env`: PAAS_* variables of the Settings to run with (Settings.to_env()); default: only
        PAAS_HOME=home."""
        self.home, self.store = home, store
        self._monkeypatch, self._capsys = monkeypatch, capsys
        for key, value in (env or {"PAAS_HOME": str(home)}).items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv(SSH_USER_ENV, raising=False)

    def __call__(self, *argv: str, user: str | None = None, stdin: str = "") -> Result:
        self._capsys.readouterr()
        if user is None:
            self._monkeypatch.delenv(SSH_USER_ENV, raising=False)
        else:
            self._monkeypatch.setenv(SSH_USER_ENV, user)
        self._monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(list(argv))
        captured = self._capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def add_key(self, name: str, admin: bool = False) -> None:
        keys = self.home / "client-keys"
        keys.mkdir(exist_ok=True)
        pair = make_keypair(keys, name)
        self.store.add_key(name, pair.public.read_text(), admin=admin)
