"""Resolve a container USER ("name", "uid", "name:group", "uid:gid") via the image's /etc files.

Runs in the container's init after pivot_root, so /etc is the container's own; its files are
opened through safepath, so a symlinked /etc/passwd cannot lead out of the container.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from paas.engine.runtime import safepath
from paas.errors import ContainerError


@dataclass(frozen=True, slots=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _table(path: str) -> list[list[str]]:
    try:
        fd = safepath.open_file(path)
    except FileNotFoundError:
        return []
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    text = b"".join(chunks).decode(errors="replace")
    return [line.split(":") for line in text.splitlines() if line.count(":") >= 2]


def _find(rows: list[list[str]], key: str) -> list[str] | None:
    """The row whose name (field 0) or, for digits, whose id (field 2) is `key`."""
    column = 2 if key.isdigit() else 0
    return next((row for row in rows if row[column] == key), None)


def resolve(user: str, etc: str = "/etc") -> Identity:
    name, _, group = (user or "root").partition(":")
    passwd = _find([r for r in _table(f"{etc}/passwd") if len(r) >= 7], name)
    if passwd is None and not name.isdigit():
        raise ContainerError(f"unable to find user {name}: no matching entries in passwd file")
    uid = int(name) if passwd is None else int(passwd[2])
    gid = 0 if passwd is None else int(passwd[3])
    home = "/" if passwd is None else passwd[5] or "/"
    groups = _table(f"{etc}/group")
    if group:
        row = _find(groups, group)
        if row is None and not group.isdigit():
            raise ContainerError(f"unable to find group {group}: no matching entries in group file")
        gid = int(group) if row is None else int(row[2])
    login = passwd[0] if passwd else None
    extra = [int(r[2]) for r in groups if len(r) >= 4 and login and login in r[3].split(",")]
    return Identity(uid, gid, tuple(dict.fromkeys([gid, *extra])), home)
