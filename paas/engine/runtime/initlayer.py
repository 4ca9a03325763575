"""The init layer: a small top-most lower layer the engine writes for each container start.

It holds every mount point (/proc, /dev, /sys, bind targets) and the generated /etc files
(hostname, hosts, resolv.conf). Mount targets are thus real directories of our own, never
image symlinks that could lead out to the host, and none of it lands in the upper dir that
a build step turns into a layer.
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
) -> dict[str, str]:
    """File name under /etc -> content. Loopback resolvers only work with the host's network."""
    usable = [ns for ns in nameservers if network == "host" or not _is_loopback(ns)]
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    hosts.append(f"{ip or '127.0.1.1'}\t{hostname}")
    return {
        "hostname": f"{hostname}\n",
        "hosts": "\n".join(hosts) + "\n",
        "resolv.conf": "".join(f"nameserver {ns}\n" for ns in usable),
    }


def write_init_layer(
    init_dir: Path, files: dict[str, str], binds: tuple[Bind, ...]
) -> None:
    for name in MOUNT_POINTS:
        (init_dir / name).mkdir(exist_ok=True)
    (init_dir / "etc").mkdir(exist_ok=True)
    for name, content in files.items():
        (init_dir / "etc" / name).write_text(content)
    for bind in binds:
        target = init_dir / bind.dst.lstrip("/")
        if os.path.isdir(bind.src):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
