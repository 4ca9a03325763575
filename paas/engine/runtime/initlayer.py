"""The init layer: a small top-most lower layer, made afresh on every container start.

It holds every mount point (/proc, /dev, /sys, bind targets) and the generated /etc files
(hostname, hosts, resolv.conf). Mount targets are thus real directories of our own, never
image symlinks that could lead out to the host, and none of it lands in the upper dir that
a build step turns into a layer. The engine computes the files (etc_files); the container's
init writes the layer into a tmpfs of its own mount namespace (populate, from rootfs.py), so
a start costs the engine's disk nothing and the layer vanishes with the container.
"""

from __future__ import annotations

import os
from pathlib import Path

from paas.engine.runtime.launchspec import Bind

MOUNT_POINTS = ("proc", "dev", "sys")

HOST_RESOLV_CONF = Path("/etc/resolv.conf")


def host_nameservers(resolv_conf: Path = HOST_RESOLV_CONF) -> tuple[str, ...]:
    try:
        lines = resolv_conf.read_text().splitlines()
    except FileNotFoundError:
        return ()
    return tuple(
        parts[1] for parts in (line.split() for line in lines)
        if len(parts) >= 2 and parts[0] == "nameserver"
    )


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def etc_files(
    hostname: str, ip: str | None, nameservers: tuple[str, ...], network: str
) -> tuple[tuple[str, str], ...]:
    """(name under /etc, content) pairs. Loopback resolvers only work with the host's network."""
    usable = [ns for ns in nameservers if network == "host" or not _is_loopback(ns)]
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    hosts.append(f"{ip or '127.0.1.1'}\t{hostname}")
    return (
        ("hostname", f"{hostname}\n"),
        ("hosts", "\n".join(hosts) + "\n"),
        ("resolv.conf", "".join(f"nameserver {ns}\n" for ns in usable)),
    )


def populate(init_dir: str, files: tuple[tuple[str, str], ...], binds: tuple[Bind, ...]) -> None:
    """Write the layer into the new dir `init_dir` (os calls only: runs in the init)."""
    os.mkdir(init_dir, 0o755)
    for name in (*MOUNT_POINTS, "etc"):
        os.mkdir(f"{init_dir}/{name}")
    for name, content in files:
        fd = os.open(f"{init_dir}/etc/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, content.encode())
        finally:
            os.close(fd)
    for bind in binds:
        target = f"{init_dir}/{bind.dst.lstrip('/')}"
        if os.path.isdir(bind.src):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
