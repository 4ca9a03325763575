"""Network against the real kernel: a bridge, leases in a JSON file, veths into a netns we own."""

from __future__ import annotations

import ipaddress
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

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
