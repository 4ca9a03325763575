"""Container networking on the host: the bridge, address management (IPAM), veth pairs
and published ports.

The bridge takes the subnet's first host address and is every container's gateway; traffic
to elsewhere is masqueraded (nat.py).
Leases are ipam.py's. Published ports live in `<root>/ports.json`, changed under an fcntl
lock and replaced atomically, so several platform processes can publish at once. The veth
requests of a start go through rtnl.py, the rest through pyroute2; netlink errors become
NetworkError.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import json
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paas.engine import rtnl
from paas.engine.containers import PortMapping, write_json
from paas.engine.ipam import Ipam
from paas.engine.runtime import restart
from paas.errors import NetworkError

if TYPE_CHECKING:
    from pyroute2 import IPRoute

# nat (iptables) loads in the methods that change rules: a --network none start never does.

PORTS_FILE = "ports.json"
LOCK_FILE = "network.lock"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
ARP_TABLE = "/proc/net/arp"
# Lets the host's 127.0.0.1 connections be DNATed out through the bridge (and their replies
# back in). Set on the bridge only: the kernel ORs it with conf/all.
ROUTE_LOCALNET = "/proc/sys/net/ipv4/conf/{bridge}/route_localnet"
EGRESS_MARKER = "egress.boot"
IFNAME_MAX = 15
VETH_PREFIX = "veh"  # the host ends; the bridge may have other ports, which teardown keeps
MAX_PREFIXLEN = 30  # a bridge and one container


def veth_names(container_id: str) -> tuple[str, str]:
    """(host end, container end before it is renamed eth0): short and unique per container."""
    tag = hashlib.sha256(container_id.encode()).hexdigest()[: IFNAME_MAX - 3]
    return f"{VETH_PREFIX}{tag}", f"vec{tag}"


@contextlib.contextmanager
def _netlink(what: str) -> Iterator[IPRoute]:
    # pyroute2 takes ~0.25 s to import; only processes that touch the network pay for it.
    from pyroute2 import IPRoute, NetlinkError

    try:
        with IPRoute() as ipr:
            yield ipr
    except NetlinkError as exc:
        raise NetworkError(f"{what}: {exc.args[1] if len(exc.args) > 1 else exc}") from None


def _check_bindable(port: PortMapping) -> None:
    """Refuse a port a host process listens on: DNAT would silently take its traffic."""
    kind = socket.SOCK_STREAM if port.proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((port.host_ip, port.host_port))
        except OSError as exc:
            raise NetworkError(f"cannot publish {port}: {exc.strerror}") from None


def _has_neighbor(ip: str) -> bool:
    """Whether the host's ARP table has `ip`: a file read, where asking netlink costs ~1 ms."""
    with open(ARP_TABLE) as table:
        return any(line.split(None, 1)[0] == ip for line in table)


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
        if self.subnet.prefixlen > MAX_PREFIXLEN:
            raise NetworkError(f"subnet {subnet} is too small: /{MAX_PREFIXLEN} at most")
        self.gateway = str(next(self.subnet.hosts()))
        self.ipam = Ipam(root, self.subnet, self._locked)
        self._stamp: str | None = None

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
        if self._bridge_ready():
            return
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

    def _bridge_ready(self) -> bool:
        """Every start comes here: a few file reads instead of ~4 ms of netlink. The bridge
        is brought up only once it has its address, so an up bridge is a finished one."""
        try:
            flags = int(Path(f"/sys/class/net/{self.bridge_name}/flags").read_text(), 16)
            marker = (self.root / EGRESS_MARKER).read_text()
        except FileNotFoundError:
            return False
        return (bool(flags & rtnl.IFF_UP) and marker == self._egress_stamp()
                and IP_FORWARD.read_text().strip() == "1")

    def _egress_stamp(self) -> str:
        """This boot and this version of the rules: an upgrade that changes them adds them.
        Worked out once per instance: neither changes while a process lives."""
        if self._stamp is None:
            from paas.engine import nat

            rules = repr(nat.egress_rules(self.bridge_name, str(self.subnet))).encode()
            self._stamp = f"{restart.boot_id()} {hashlib.sha256(rules).hexdigest()[:12]}"
        return self._stamp

    def _ensure_egress(self) -> None:
        """The NAT rules, checked once per boot of the host: every container start comes here,
        and each iptables check is a process of its own."""
        from paas.engine import nat

        marker, stamp = self.root / EGRESS_MARKER, self._egress_stamp()
        with contextlib.suppress(FileNotFoundError):
            if marker.read_text() == stamp:
                return
        nat.ensure_egress(self.bridge_name, str(self.subnet))
        marker.write_text(stamp)

    def leases(self) -> dict[str, str]:
        """address -> container id."""
        return self.ipam.leases()

    def allocate(self, container_id: str) -> str:
        """The container's address: its lease, or a new one (see ipam.py)."""
        return self.ipam.allocate(container_id)

    def release(self, container_id: str) -> None:
        self.ipam.release(container_id)

    def attach(self, container_id: str, pid: int, ip: str) -> None:
        """Plug the network namespace of `pid` into the bridge with a veth pair."""
        if self.ipam.owner(ip) != container_id:
            raise NetworkError(f"{ip} is not leased to container {container_id}")
        host, peer = veth_names(container_id)
        bridge = self._bridge_index()
        try:
            if _has_neighbor(ip):  # the MAC of a container that held this address before
                rtnl.delete_neighbor(ip, bridge)
            try:
                rtnl.add_veth(host, peer, master=bridge, peer_pid=pid)
            except FileExistsError:
                # A leftover: from a start that died half-way, or the pair of this
                # container's previous run, which its dying namespace has not taken yet.
                rtnl.delete_link(host)
                rtnl.add_veth(host, peer, master=bridge, peer_pid=pid)
        except OSError as exc:
            raise NetworkError(f"cannot attach container {container_id}: {exc.strerror}") from None

    def _bridge_index(self) -> int:
        try:
            return int(Path(f"/sys/class/net/{self.bridge_name}/ifindex").read_text())
        except FileNotFoundError:
            raise NetworkError(f"bridge {self.bridge_name} does not exist") from None

    def detach(self, container_id: str) -> None:
        """Delete the host end of the container's veth, and with it its peer, now.

        A container that exited needs none of this: the kernel deletes the pair with its
        network namespace, in the background; deleting it here would wait for that (the
        RTNL lock, an RCU grace period: 20-40 ms). What the kernel has not removed yet by
        the time the same container starts again, attach replaces, and teardown sweeps."""
        host, _ = veth_names(container_id)
        try:
            rtnl.delete_link(host)
        except OSError as exc:
            raise NetworkError(f"cannot detach container {container_id}: {exc.strerror}") from None

    def _sweep_ports(self) -> None:
        """Delete the veths still on the bridge: pairs of exited containers that the kernel
        has not removed yet (deleting a bridge would leave them behind, unplugged)."""
        try:
            ports = os.listdir(f"/sys/class/net/{self.bridge_name}/brif")
        except FileNotFoundError:
            return
        for port in ports:
            if port.startswith(VETH_PREFIX):
                try:
                    rtnl.delete_link(port)
                except OSError as exc:
                    raise NetworkError(f"cannot delete {port}: {exc.strerror}") from None

    def published(self) -> dict[str, dict[str, str]]:
        """"<proto>/<host port>" -> {"container": id, "ip": its address, "host_ip": ...}."""
        try:
            return dict(json.loads((self.root / PORTS_FILE).read_text()))
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise NetworkError(f"corrupt {self.root / PORTS_FILE}: {exc}") from None

    def publish(self, container_id: str, ip: str, ports: Sequence[PortMapping]) -> None:
        """Forward the host ports to the container at `ip`. A host port is one container's:
        another of this network, or a host process listening on it, makes this fail."""
        from paas.engine import nat

        if not ports:
            return
        with self._locked():
            taken = self.published()
            mine: dict[str, dict[str, str]] = {}
            for port in ports:
                key = f"{port.proto}/{port.host_port}"
                owner = taken.get(key, {}).get("container", container_id)
                if owner != container_id or key in mine:
                    raise NetworkError(f"cannot publish {port}: host port {key} is already "
                                       f"published by container {owner}")
                _check_bindable(port)
                mine[key] = {"container": container_id, "ip": ip, "host_ip": port.host_ip}
            # Recorded before the rules go in, so a crash in between leaves a record that
            # unpublish acts on, never rules that nothing knows about.
            write_json(self.root / PORTS_FILE, {**taken, **mine})
            try:
                Path(ROUTE_LOCALNET.format(bridge=self.bridge_name)).write_text("1\n")
                nat.publish(self.bridge_name, container_id, ip, ports)
            except (NetworkError, OSError) as exc:
                write_json(self.root / PORTS_FILE, taken)
                raise NetworkError(f"cannot publish the ports of {container_id}: {exc}") from None
            # After the DNAT, or a datagram in between would start a flow that bypasses it; a
            # failure here leaves rules and record together, for unpublish.
            nat.forget_udp_flows(ports)

    def unpublish(self, container_id: str) -> None:
        """Remove the container's published ports, their rules and their records."""
        from paas.engine import nat

        with self._locked():
            taken = self.published()
            kept = {key: pub for key, pub in taken.items() if pub["container"] != container_id}
            if kept == taken:
                return
            nat.remove_tagged(nat.container_tag(self.bridge_name, container_id))
            write_json(self.root / PORTS_FILE, kept)

    def teardown(self) -> None:
        """Remove every veth of a lease, all leases, the bridge's rules, and the bridge."""
        from paas.engine import nat

        leased = set(self.leases().values())  # before the lock, which a conversion takes
        with self._locked():
            for container_id in leased:
                self.detach(container_id)
            self._sweep_ports()  # and the veths of a container leasing meanwhile
            self.ipam.clear()
            nat.remove_bridge(self.bridge_name)
            (self.root / PORTS_FILE).unlink(missing_ok=True)
            (self.root / EGRESS_MARKER).unlink(missing_ok=True)
            with _netlink(f"cannot delete bridge {self.bridge_name}") as ipr:
                for index in ipr.link_lookup(ifname=self.bridge_name):
                    ipr.link("del", index=index)
