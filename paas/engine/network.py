"""Container networking on the host: the bridge, address management (IPAM) and veth pairs.

The bridge takes the subnet's first host address and is every container's gateway; traffic
to elsewhere is masqueraded (nat.py).
Leases live in `<root>/ipam.json`, changed under an fcntl lock and replaced atomically,
so several platform processes can allocate at once. Netlink errors become NetworkError.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paas.engine import nat
from paas.errors import NetworkError

if TYPE_CHECKING:
    from pyroute2 import IPRoute

IPAM_FILE = "ipam.json"
LOCK_FILE = "network.lock"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
EGRESS_MARKER = "egress.boot"
IFNAME_MAX = 15


def veth_names(container_id: str) -> tuple[str, str]:
    """(host end, container end before it is renamed eth0): short and unique per container."""
    tag = hashlib.sha256(container_id.encode()).hexdigest()[: IFNAME_MAX - 3]
    return f"veh{tag}", f"vec{tag}"


@contextlib.contextmanager
def _netlink(what: str) -> Iterator[IPRoute]:
    # pyroute2 takes ~0.25 s to import; only processes that touch the network pay for it.
    from pyroute2 import IPRoute, NetlinkError

    try:
        with IPRoute() as ipr:
            yield ipr
    except NetlinkError as exc:
        raise NetworkError(f"{what}: {exc.args[1] if len(exc.args) > 1 else exc}") from None


def _tolerate(code: int, call: Any, *args: Any, **kwargs: Any) -> None:
    """Make a netlink call whose failure with errno `code` means it was done already."""
    from pyroute2 import NetlinkError

    try:
        call(*args, **kwargs)
    except NetlinkError as exc:
        if exc.code != code:
            raise


class Network:
    """One bridge and its subnet, with the leases of the containers on it."""

    def __init__(self, root: Path, bridge_name: str, subnet: str) -> None:
        if len(bridge_name) > IFNAME_MAX:
            raise NetworkError(f"bridge name {bridge_name!r} is longer than {IFNAME_MAX}")
        self.root = root
        self.bridge_name = bridge_name
        try:
            self.subnet = ipaddress.IPv4Network(subnet, strict=True)
        except ValueError as exc:
            raise NetworkError(f"invalid subnet {subnet!r}: {exc}") from None
        self.gateway = str(next(self.subnet.hosts()))

    @property
    def netmask(self) -> str:
        return str(self.subnet.netmask)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def ensure_bridge(self) -> None:
        """Create the bridge if needed (idempotent, safe against concurrent callers)."""
        with self._locked(), _netlink(f"cannot set up bridge {self.bridge_name}") as ipr:
            if not ipr.link_lookup(ifname=self.bridge_name):
                _tolerate(errno.EEXIST, ipr.link, "add", ifname=self.bridge_name, kind="bridge")
            index = ipr.link_lookup(ifname=self.bridge_name)[0]
            prefix = self.subnet.prefixlen
            _tolerate(
                errno.EEXIST, ipr.addr, "add", index=index, address=self.gateway, prefixlen=prefix
            )
            ipr.link("set", index=index, state="up")
            self._ensure_egress()
        IP_FORWARD.write_text("1\n")

    def _ensure_egress(self) -> None:
        """The NAT rules, checked once per boot of the host: every container start comes here,
        and each iptables check is a process of its own."""
        marker = self.root / EGRESS_MARKER
        boot = BOOT_ID.read_text().strip()
        with contextlib.suppress(FileNotFoundError):
            if marker.read_text() == boot:
                return
        nat.ensure_egress(self.bridge_name, str(self.subnet))
        marker.write_text(boot)

    def leases(self) -> dict[str, str]:
        """address -> container id."""
        try:
            data = json.loads((self.root / IPAM_FILE).read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise NetworkError(f"corrupt {self.root / IPAM_FILE}: {exc}") from None
        return dict(data.get("leases", {}))

    def _last(self) -> str | None:
        try:
            return json.loads((self.root / IPAM_FILE).read_text()).get("last")
        except (FileNotFoundError, ValueError):
            return None

    def _save(self, leases: dict[str, str], last: str | None = None) -> None:
        path = self.root / IPAM_FILE
        tmp = path.with_name(f".{IPAM_FILE}.{os.getpid()}.tmp")
        data = {"subnet": str(self.subnet), "leases": leases, "last": last or self._last()}
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)

    def allocate(self, container_id: str) -> str:
        """An address for the container: its current lease, or the next free one after the last
        handed out. Round-robin, as Docker does: an address just released is the last to come
        back, so peers' ARP caches and in-flight connections have time to forget it."""
        with self._locked():
            leases = self.leases()
            for ip, owner in leases.items():
                if owner == container_id:
                    return ip
            hosts = [str(h) for h in self.subnet.hosts() if str(h) != self.gateway]
            last = self._last()
            start = hosts.index(last) + 1 if last in hosts else 0
            for ip in hosts[start:] + hosts[:start]:
                if ip not in leases:
                    leases[ip] = container_id
                    self._save(leases, last=ip)
                    return ip
        raise NetworkError(f"no free address left in {self.subnet}")

    def release(self, container_id: str) -> None:
        with self._locked():
            leases = self.leases()
            kept = {ip: owner for ip, owner in leases.items() if owner != container_id}
            if kept != leases:
                self._save(kept)

    def attach(self, container_id: str, pid: int, ip: str) -> None:
        """Plug the network namespace of `pid` into the bridge with a veth pair."""
        if self.leases().get(ip) != container_id:
            raise NetworkError(f"{ip} is not leased to container {container_id}")
        host, peer = veth_names(container_id)
        self.detach(container_id)  # a leftover from a start that died half-way
        with _netlink(f"cannot attach container {container_id}") as ipr:
            bridge = ipr.link_lookup(ifname=self.bridge_name)
            if not bridge:
                raise NetworkError(f"bridge {self.bridge_name} does not exist")
            # The host may still map this address to the MAC of a container that held it before.
            _tolerate(errno.ENOENT, ipr.neigh, "del", dst=ip, ifindex=bridge[0])
            ipr.link("add", ifname=host, kind="veth", peer=peer)
            host_index = ipr.link_lookup(ifname=host)[0]
            try:
                ipr.link("set", index=host_index, master=bridge[0], state="up")
                ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_pid=pid)
            except BaseException:
                ipr.link("del", index=host_index)
                raise

    def detach(self, container_id: str) -> None:
        """Delete the host end of the container's veth (its peer goes with it)."""
        host, _ = veth_names(container_id)
        with _netlink(f"cannot detach container {container_id}") as ipr:
            for index in ipr.link_lookup(ifname=host):
                # ENODEV: the pair vanished on its own, with the container's namespace.
                _tolerate(errno.ENODEV, ipr.link, "del", index=index)

    def teardown(self) -> None:
        """Remove every veth of a lease, all leases, the egress rules, and the bridge."""
        with self._locked():
            for container_id in set(self.leases().values()):
                self.detach(container_id)
            (self.root / IPAM_FILE).unlink(missing_ok=True)
            nat.remove_egress(self.bridge_name, str(self.subnet))
            (self.root / EGRESS_MARKER).unlink(missing_ok=True)
            with _netlink(f"cannot delete bridge {self.bridge_name}") as ipr:
                for index in ipr.link_lookup(ifname=self.bridge_name):
                    ipr.link("del", index=index)
