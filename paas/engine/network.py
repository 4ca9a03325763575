"""Container networking on the host: the bridge, address management (IPAM), veth pairs
and published ports.

The bridge takes the subnet's first host address and is every container's gateway; traffic
to elsewhere is masqueraded (nat.py).
Leases live in `<root>/ipam.json` and published ports in `<root>/ports.json`, changed under
an fcntl lock and replaced atomically, so several platform processes can allocate at once.
Netlink errors become NetworkError.
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

from paas.engine import nat
from paas.engine.containers import PortMapping
from paas.errors import NetworkError

if TYPE_CHECKING:
    from pyroute2 import IPRoute

IPAM_FILE = "ipam.json"
PORTS_FILE = "ports.json"
LOCK_FILE = "network.lock"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
ARP_TABLE = "/proc/net/arp"
# Lets the host's 127.0.0.1 connections be DNATed out through the bridge (and their replies
# back in). Set on the bridge only: the kernel ORs it with conf/all.
ROUTE_LOCALNET = "/proc/sys/net/ipv4/conf/{bridge}/route_localnet"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
EGRESS_MARKER = "egress.boot"
IFNAME_MAX = 15
IFF_UP = 0x1
MAX_PREFIXLEN = 30  # a bridge and one container


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


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


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


def _delete_link(ipr: IPRoute, name: str) -> None:
    for index in ipr.link_lookup(ifname=name):
        # ENODEV: the pair vanished on its own, with the container's namespace.
        _tolerate(errno.ENODEV, ipr.link, "del", index=index)


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
        return (bool(flags & IFF_UP) and marker == self._egress_stamp()
                and IP_FORWARD.read_text().strip() == "1")

    def _egress_stamp(self) -> str:
        """This boot and this version of the rules: an upgrade that changes them adds them."""
        rules = repr(nat.egress_rules(self.bridge_name, str(self.subnet))).encode()
        return f"{BOOT_ID.read_text().strip()} {hashlib.sha256(rules).hexdigest()[:12]}"

    def _ensure_egress(self) -> None:
        """The NAT rules, checked once per boot of the host: every container start comes here,
        and each iptables check is a process of its own."""
        marker, stamp = self.root / EGRESS_MARKER, self._egress_stamp()
        with contextlib.suppress(FileNotFoundError):
            if marker.read_text() == stamp:
                return
        nat.ensure_egress(self.bridge_name, str(self.subnet))
        marker.write_text(stamp)

    def leases(self) -> dict[str, str]:
        """address -> container id."""
        return self._load()[0]

    def _load(self) -> tuple[dict[str, str], str | None]:
        """The leases and the address handed out last."""
        try:
            data = json.loads((self.root / IPAM_FILE).read_text())
        except FileNotFoundError:
            return {}, None
        except ValueError as exc:
            raise NetworkError(f"corrupt {self.root / IPAM_FILE}: {exc}") from None
        return dict(data.get("leases", {})), data.get("last")

    def _save(self, leases: dict[str, str], last: str | None) -> None:
        data = {"subnet": str(self.subnet), "leases": leases, "last": last}
        _write_json(self.root / IPAM_FILE, data)

    def allocate(self, container_id: str) -> str:
        """An address for the container: its current lease, or the next free one after the last
        handed out. Round-robin, as Docker does: an address just released is the last to come
        back, so peers' ARP caches and in-flight connections have time to forget it."""
        with self._locked():
            leases, last = self._load()
            for ip, owner in leases.items():
                if owner == container_id:
                    return ip
            # Integers, not ipaddress objects: a /16 has 65,534 hosts to walk past.
            first = int(self.subnet.network_address) + 2  # +1 is the bridge's
            count = self.subnet.num_addresses - 3  # no network, bridge, broadcast
            start = int(ipaddress.IPv4Address(last)) + 1 - first if last else 0
            for offset in range(count):
                ip = str(ipaddress.IPv4Address(first + (start + offset) % count))
                if ip not in leases:
                    leases[ip] = container_id
                    self._save(leases, last=ip)
                    return ip
        raise NetworkError(f"no free address left in {self.subnet}")

    def release(self, container_id: str) -> None:
        with self._locked():
            leases, last = self._load()
            kept = {ip: owner for ip, owner in leases.items() if owner != container_id}
            if kept != leases:
                self._save(kept, last)

    def attach(self, container_id: str, pid: int, ip: str) -> None:
        """Plug the network namespace of `pid` into the bridge with a veth pair."""
        if self.leases().get(ip) != container_id:
            raise NetworkError(f"{ip} is not leased to container {container_id}")
        host, peer = veth_names(container_id)
        bridge = self._bridge_index()
        # Each netlink request costs ~1 ms of pyroute2 here: the pair is made in one, its
        # host end already up on the bridge, its peer born in the container's namespace
        # (moving it there afterwards makes the kernel wait for an RCU grace period, ~20 ms).
        veth = {"ifname": host, "kind": "veth", "master": bridge, "state": "up",
                "peer": {"ifname": peer, "net_ns_pid": pid}}
        from pyroute2 import NetlinkError

        with _netlink(f"cannot attach container {container_id}") as ipr:
            if _has_neighbor(ip):  # the MAC of a container that held this address before
                _tolerate(errno.ENOENT, ipr.neigh, "del", dst=ip, ifindex=bridge)
            try:
                ipr.link("add", **veth)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
                _delete_link(ipr, host)  # a leftover from a start that died half-way
                ipr.link("add", **veth)

    def _bridge_index(self) -> int:
        try:
            return int(Path(f"/sys/class/net/{self.bridge_name}/ifindex").read_text())
        except FileNotFoundError:
            raise NetworkError(f"bridge {self.bridge_name} does not exist") from None

    def detach(self, container_id: str) -> None:
        """Delete the host end of the container's veth (its peer goes with it)."""
        host, _ = veth_names(container_id)
        if not Path(f"/sys/class/net/{host}").exists():
            return  # the usual case: it went with the container's namespace
        with _netlink(f"cannot detach container {container_id}") as ipr:
            _delete_link(ipr, host)

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
            _write_json(self.root / PORTS_FILE, {**taken, **mine})
            try:
                Path(ROUTE_LOCALNET.format(bridge=self.bridge_name)).write_text("1\n")
                nat.publish(self.bridge_name, container_id, ip, ports)
            except (NetworkError, OSError) as exc:
                _write_json(self.root / PORTS_FILE, taken)
                raise NetworkError(f"cannot publish the ports of {container_id}: {exc}") from None

    def unpublish(self, container_id: str) -> None:
        """Remove the container's published ports, their rules and their records."""
        with self._locked():
            taken = self.published()
            kept = {key: pub for key, pub in taken.items() if pub["container"] != container_id}
            if kept == taken:
                return
            nat.remove_tagged(nat.container_tag(self.bridge_name, container_id))
            _write_json(self.root / PORTS_FILE, kept)

    def teardown(self) -> None:
        """Remove every veth of a lease, all leases, the bridge's rules, and the bridge."""
        with self._locked():
            for container_id in set(self.leases().values()):
                self.detach(container_id)
            (self.root / IPAM_FILE).unlink(missing_ok=True)
            nat.remove_bridge(self.bridge_name)
            (self.root / PORTS_FILE).unlink(missing_ok=True)
            (self.root / EGRESS_MARKER).unlink(missing_ok=True)
            with _netlink(f"cannot delete bridge {self.bridge_name}") as ipr:
                for index in ipr.link_lookup(ifname=self.bridge_name):
                    ipr.link("del", index=index)
