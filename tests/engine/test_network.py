"""Network against the real kernel: a bridge, leases in a directory of symlinks, veths into a netns we own."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
from testkit import free_port, iptables_rules

from paas.engine import nat
from paas.engine.containers import PortMapping
from paas.engine.network import Network, veth_names
from paas.errors import NetworkError

SUBNET = f"10.{random.randint(210, 249)}.{random.randint(0, 255)}.0/24"
SMALL_SUBNET = f"10.{random.randint(210, 249)}.{random.randint(0, 255)}.8/29"
BRIDGE = f"pn{os.getpid() % 100000}{random.randint(0, 999)}"
NETNS_HOLDER = (
    "from paas.engine.runtime import _libc; import time; "
    "_libc.unshare(_libc.CLONE_NEWNET); print('ready', flush=True); time.sleep(60)"
)


def link_names() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network(tmp_path / "net", BRIDGE, SUBNET)
    try:
        yield net
    finally:
        net.teardown()
        ours = {BRIDGE, *(name for i in range(10) for name in veth_names(f"c{i}"))}
        assert ours & link_names() == set()


@pytest.fixture
def netns_pid() -> Iterator[int]:
    holder = subprocess.Popen([sys.executable, "-c", NETNS_HOLDER], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"ready\n"
        yield holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def _allocate(args: tuple[str, str, str, str]) -> str:
    root, bridge, subnet, container_id = args
    return Network(Path(root), bridge, subnet).allocate(container_id)


def _ensure(args: tuple[str, str, str]) -> None:
    root, bridge, subnet = args
    Network(Path(root), bridge, subnet).ensure_bridge()


def test_bridge_is_created_idempotently_and_concurrently(network: Network) -> None:
    args = (str(network.root), BRIDGE, SUBNET)
    with ProcessPoolExecutor(4) as pool:
        list(pool.map(_ensure, [args] * 4))
    network.ensure_bridge()
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE],
                         capture_output=True, text=True, check=True).stdout
    assert out.count(" inet ") == 1
    assert f"{network.gateway}/24" in out
    assert "UP" in subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True,
                                  text=True).stdout
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"


def test_allocation_is_stable_unique_and_persisted(network: Network) -> None:
    first = network.allocate("c1")
    assert first == str(ipaddress.IPv4Network(SUBNET)[2])  # the first host is the bridge
    assert network.allocate("c1") == first
    second = network.allocate("c2")
    assert second != first
    reopened = Network(network.root, BRIDGE, SUBNET)
    assert reopened.leases() == {first: "c1", second: "c2"}
    reopened.release("c1")
    # Round-robin: a released address is handed out again only after the rest of the range.
    assert network.allocate("c3") == str(ipaddress.IPv4Network(SUBNET)[4])


def test_released_address_comes_back_after_the_range_wraps(tmp_path: Path) -> None:
    small = Network(tmp_path / "small", BRIDGE, SMALL_SUBNET)  # 5 usable addresses
    ips = [small.allocate(f"c{i}") for i in range(5)]
    small.release("c0")
    assert small.allocate("again") == ips[0]  # the only free one, after wrapping


def test_concurrent_allocations_never_collide(network: Network) -> None:
    ids = [f"c{i}" for i in range(8)]
    with ProcessPoolExecutor(4) as pool:
        ips = list(pool.map(_allocate, [(str(network.root), BRIDGE, SUBNET, i) for i in ids]))
    assert len(set(ips)) == len(ids)
    assert network.leases() == dict(zip(ips, ids, strict=True))


def test_concurrent_allocations_from_threads_never_collide(network: Network) -> None:
    def allocate_many(worker: int) -> list[tuple[str, str]]:
        own = Network(network.root, BRIDGE, SUBNET)  # one instance each, as processes have
        ids = [f"t{worker}-{i}" for i in range(25)]
        return [(own.allocate(i), i) for i in ids]

    with ThreadPoolExecutor(8) as pool:
        pairs = [pair for batch in pool.map(allocate_many, range(8)) for pair in batch]
    assert len({ip for ip, _ in pairs}) == len(pairs) == 200
    reopened = Network(network.root, BRIDGE, SUBNET)
    assert reopened.leases() == dict(pairs)
    ip, owner = pairs[0]
    assert reopened.allocate(owner) == ip  # a lease is stable across instances


def test_exhausted_subnet_raises(tmp_path: Path) -> None:
    small = Network(tmp_path / "small", BRIDGE, SMALL_SUBNET)
    ips = [small.allocate(f"c{i}") for i in range(5)]  # /29: 6 hosts, one is the bridge
    assert small.gateway not in ips
    with pytest.raises(NetworkError, match="no free address"):
        small.allocate("one-too-many")


def test_attach_and_detach_a_veth(network: Network, netns_pid: int) -> None:
    network.ensure_bridge()
    ip = network.allocate("c1")
    network.attach("c1", netns_pid, ip)
    host, peer = veth_names("c1")
    assert len(host) <= 15
    assert host in link_names()
    assert peer not in link_names()
    assert f"master {BRIDGE}" in subprocess.run(["ip", "link", "show", host],
                                                capture_output=True, text=True).stdout
    assert peer in Path(f"/proc/{netns_pid}/net/dev").read_text()
    network.detach("c1")
    assert host not in link_names()
    deadline = time.monotonic() + 2
    while peer in Path(f"/proc/{netns_pid}/net/dev").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_attach_forgets_the_mac_of_the_address_s_previous_holder(
    network: Network, netns_pid: int
) -> None:
    network.ensure_bridge()
    ip = network.allocate("c1")
    subprocess.run(["ip", "neigh", "replace", ip, "lladdr", "02:00:00:00:00:01", "dev", BRIDGE,
                    "nud", "permanent"], check=True)
    assert ip in Path("/proc/net/arp").read_text()
    network.attach("c1", netns_pid, ip)
    assert ip not in Path("/proc/net/arp").read_text()


def test_attach_refuses_an_address_not_leased_to_the_container(network: Network) -> None:
    network.ensure_bridge()
    ip = network.allocate("c1")
    with pytest.raises(NetworkError, match="not leased"):
        network.attach("c2", os.getpid(), ip)


def test_teardown_removes_bridge_veths_and_leases(network: Network, netns_pid: int) -> None:
    network.ensure_bridge()
    network.attach("c1", netns_pid, network.allocate("c1"))
    network.teardown()
    assert BRIDGE not in link_names()
    assert veth_names("c1")[0] not in link_names()
    assert network.leases() == {}


def test_invalid_settings_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(NetworkError, match="longer than 15"):
        Network(tmp_path, "a-very-long-bridge-name", SUBNET)
    with pytest.raises(NetworkError, match="invalid subnet"):
        Network(tmp_path, BRIDGE, "10.0.0.1/24")
    with pytest.raises(NetworkError, match="too small"):
        Network(tmp_path, BRIDGE, "10.0.0.0/31")


def test_a_large_subnet_allocates_quickly_and_wraps(tmp_path: Path) -> None:
    big = Network(tmp_path / "big", BRIDGE, "10.96.0.0/16")
    ips = [big.allocate(f"c{i}") for i in range(300)]
    assert ips[0] == "10.96.0.2" and ips[-1] == "10.96.1.45"
    assert len(set(ips)) == 300


def _addresses_in(subnet: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    net = ipaddress.IPv4Network(subnet)
    return [word for line in out.splitlines() for word in line.split()
            if "/" in word and word[0].isdigit() and ipaddress.IPv4Interface(word).ip in net]


def test_a_thousand_attach_cycles_leave_nothing_behind(network: Network, netns_pid: int) -> None:
    """Allocate, attach, (every tenth: publish and unpublish), detach, release: 1,000 times."""
    network.ensure_bridge()
    port = free_port()
    started = time.monotonic()
    for cycle in range(1000):
        container_id = f"cycle{cycle}"
        ip = network.allocate(container_id)
        network.attach(container_id, netns_pid, ip)
        if cycle % 10 == 0:
            network.publish(container_id, ip, (PortMapping(port, 80),))
            network.unpublish(container_id)
        network.detach(container_id)
        network.release(container_id)
    print(f"1,000 network attachment cycles: {time.monotonic() - started:.1f} s")
    assert network.leases() == {} and network.published() == {}
    hosts = {veth_names(f"cycle{cycle}")[0] for cycle in range(1000)}
    assert hosts & link_names() == set()
    assert Path(f"/proc/{netns_pid}/net/dev").read_text().count(":") == 1  # lo alone
    assert _addresses_in(SUBNET) == [f"{network.gateway}/24"]
    assert [r for r in iptables_rules(nat.bridge_tag(BRIDGE)) if f'"{nat.bridge_tag(BRIDGE)}"' not in r] == []
    network.teardown()
    assert _addresses_in(SUBNET) == [] and BRIDGE not in link_names()
    assert iptables_rules(nat.bridge_tag(BRIDGE)) == []


def test_a_root_from_before_keeps_its_leases(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    net = ipaddress.IPv4Network(SUBNET)
    old = {"subnet": SUBNET, "leases": {str(net[2]): "a", str(net[5]): "b"}, "last": str(net[5])}
    (root / "ipam.json").write_text(json.dumps(old))
    network = Network(root, BRIDGE, SUBNET)
    assert network.leases() == old["leases"]
    assert network.allocate("b") == str(net[5])
    assert network.allocate("c") == str(net[6])  # round-robin goes on after the old "last"
    assert not (root / "ipam.json").exists()
    network.release("a")
    assert Network(root, BRIDGE, SUBNET).leases() == {str(net[5]): "b", str(net[6]): "c"}


def test_an_owner_link_without_its_lease_means_nothing(tmp_path: Path) -> None:
    """What a crash between the two links of an allocation leaves."""
    network = Network(tmp_path / "net", BRIDGE, SUBNET)
    taken = network.allocate("other")
    (tmp_path / "net" / "ipam" / "owners" / "c1").symlink_to(taken)
    network.release("c1")  # must not free the address of "other"
    assert network.leases() == {taken: "other"}
    (tmp_path / "net" / "ipam" / "owners" / "c1").symlink_to(taken)
    mine = network.allocate("c1")
    assert mine != taken and network.leases() == {taken: "other", mine: "c1"}
    with pytest.raises(NetworkError, match="invalid container id"):
        network.allocate("../escape")


def _allocate_many(args: tuple[str, int]) -> list[tuple[str, str]]:
    root, worker = args
    own = Network(Path(root), BRIDGE, SUBNET)
    return [(own.allocate(f"p{worker}-{i}"), f"p{worker}-{i}") for i in range(20)]


def test_allocators_in_processes_and_threads_at_once_never_collide(network: Network) -> None:
    with ProcessPoolExecutor(3) as procs, ThreadPoolExecutor(3) as threads:
        jobs = [procs.submit(_allocate_many, (str(network.root), w)) for w in range(3)]
        jobs += [threads.submit(_allocate_many, (str(network.root), w)) for w in range(3, 6)]
        pairs = [pair for job in jobs for pair in job.result()]
    assert len({ip for ip, _ in pairs}) == len(pairs) == 120
    assert network.leases() == dict(pairs)


def test_attach_replaces_a_leftover_pair_of_the_same_container(
    network: Network, netns_pid: int
) -> None:
    network.ensure_bridge()
    ip = network.allocate("c1")
    network.attach("c1", netns_pid, ip)
    network.attach("c1", netns_pid, ip)  # as after a start that died half-way
    assert veth_names("c1")[0] in link_names()
    assert Path(f"/proc/{netns_pid}/net/dev").read_text().count(veth_names("c1")[1]) == 1
    network.detach("c1")
    network.detach("c1")  # nothing left to delete: not an error
    assert veth_names("c1")[0] not in link_names()


def test_attach_to_a_vanished_process_raises(network: Network) -> None:
    network.ensure_bridge()
    ip = network.allocate("c1")
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(NetworkError, match="cannot attach container c1"):
        network.attach("c1", gone.pid, ip)
    assert veth_names("c1")[0] not in link_names()


def test_the_pair_goes_with_its_namespace_and_teardown_sweeps_the_rest(
    network: Network, netns_pid: int
) -> None:
    """Containers that exit are not detached: the kernel deletes their pair with their
    namespace. One whose namespace lives on is swept by teardown, lease or not."""
    network.ensure_bridge()
    holder = subprocess.Popen([sys.executable, "-c", NETNS_HOLDER], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"ready\n"
        network.attach("c1", holder.pid, network.allocate("c1"))
        network.attach("c2", netns_pid, network.allocate("c2"))
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while veth_names("c1")[0] in link_names():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    network.release("c2")  # its pair lives on, in a namespace that is still there
    network.teardown()
    assert veth_names("c2")[0] not in link_names()
    assert "vec" not in Path(f"/proc/{netns_pid}/net/dev").read_text()
