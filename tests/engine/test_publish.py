"""Published ports (`-p`) on real busybox containers: reachable from the host's loopback and
from other containers, one owner per host port, and no rule left once a container stops.
TCP is served by busybox's httpd; UDP by a socket the test opens in the container's network
namespace, as busybox's nc has no UDP mode: the datagrams take the container's path all the same."""

from __future__ import annotations

import ctypes
import json
import os
import socket
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from testkit import accepts, free_port, http_get, iptables_rules
from testkit import busybox_spec as base_spec

from paas.engine import nat
from paas.engine.containers import ContainerSpec, ContainerStatus, PortMapping
from paas.engine.engine import Engine
from paas.errors import ContainerError

# Serves its own name (the first argument) over HTTP on port 80.
HTTPD = 'mkdir -p /w && echo "hello from $0" > /w/index.html && exec httpd -f -p 80 -h /w'


def busybox_spec(engine: Engine, *argv: str, **kwargs: Any) -> ContainerSpec:
    return base_spec(engine, *argv, **{"network": "bridge", **kwargs})


def start_httpd(engine: Engine, name: str, *ports: PortMapping) -> str:
    spec = busybox_spec(engine, "sh", "-c", HTTPD, name, ports=ports)
    return engine.runtime.start(engine.runtime.create(spec).id).id




CLONE_NEWNET = 0x40000000
UDP_PORT = 5353
DATAGRAM_TIMEOUT_S = 0.5
DATAGRAM_TRIES = 20


def start_sleeper(engine: Engine, *ports: PortMapping) -> str:
    spec = busybox_spec(engine, "sleep", "600", ports=ports)
    return engine.runtime.start(engine.runtime.create(spec).id).id


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def udp_socket_in(engine: Engine, container_id: str) -> socket.socket:
    """A UDP socket in the container's network namespace: a thread enters the namespace (only
    that thread moves, and it ends), and the socket stays in the namespace it was made in."""
    pid = engine.runtime.get(container_id).pid
    made: list[socket.socket] = []
    failed: list[OSError] = []

    def make() -> None:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                failed.append(OSError(ctypes.get_errno(), "setns"))
                return
            made.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        finally:
            os.close(fd)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    made[0].settimeout(DATAGRAM_TIMEOUT_S)
    return made[0]


def udp_echo_once(server: socket.socket, client: socket.socket, to: tuple[str, int]) -> tuple[
        tuple[str, int], tuple[str, int]]:
    """Send a datagram from `client` to `to` (again until `server` gets it: a first datagram
    may wait on ARP), echo it back; (where the server saw it from, where the reply came from)."""
    payload = os.urandom(8).hex().encode()
    for _ in range(DATAGRAM_TRIES):
        client.sendto(payload, to)
        try:
            data, peer = server.recvfrom(1024)
        except TimeoutError:
            continue
        assert data == payload
        server.sendto(b"echo " + data, peer)
        reply, source = client.recvfrom(1024)
        assert reply == b"echo " + payload
        return peer, source
    raise AssertionError(f"no datagram reached {to}")


def run_output(engine: Engine, script: str, **kwargs: object) -> tuple[int, list[str]]:
    lines: list[str] = []
    result = engine.runtime.run(busybox_spec(engine, "sh", "-c", script, **kwargs), lines.append,
                                timeout=20)
    engine.runtime.remove(result.container_id)
    return result.exit_code, lines




def test_published_port_answers_on_host_loopback(busybox_engine: Engine) -> None:
    anywhere, loopback = free_port(), free_port()
    web = start_httpd(busybox_engine, "web", PortMapping(anywhere, 80))
    local = start_httpd(busybox_engine, "local", PortMapping(loopback, 80, host_ip="127.0.0.1"))
    assert http_get("127.0.0.1", anywhere) == "hello from web\n"
    assert http_get("127.0.0.1", loopback) == "hello from local\n"
    bridge = busybox_engine.network.bridge_name
    route_localnet = Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
    assert route_localnet.read_text().strip() == "1"
    assert len(iptables_rules(nat.container_tag(bridge, web))) == 2
    assert len(iptables_rules(nat.container_tag(bridge, local))) == 1  # no PREROUTING for loopback
    published = busybox_engine.network.published()
    assert {pub["container"] for pub in published.values()} == {web, local}


def test_containers_reach_each_other_by_ip_and_through_a_published_port(
    busybox_engine: Engine,
) -> None:
    port = free_port()
    server = start_httpd(busybox_engine, "server", PortMapping(port, 80))
    ip = busybox_engine.runtime.get(server).ip
    gateway = busybox_engine.network.gateway
    http_get("127.0.0.1", port)  # up
    script = f"wget -q -O - http://{ip}/index.html && wget -q -O - http://{gateway}:{port}/index.html"
    assert run_output(busybox_engine, script) == (0, ["hello from server"] * 2)


def test_a_host_port_has_one_owner(busybox_engine: Engine) -> None:
    port = free_port()
    first = start_httpd(busybox_engine, "first", PortMapping(port, 80))
    second = busybox_engine.runtime.create(
        busybox_spec(busybox_engine, "sh", "-c", HTTPD, "second",
                     ports=(PortMapping(port, 8080, host_ip="127.0.0.1"),))
    )
    with pytest.raises(ContainerError, match=f"tcp/{port} is already published by container {first}"):
        busybox_engine.runtime.start(second.id)
    failed = busybox_engine.runtime.get(second.id)
    assert failed.status is ContainerStatus.EXITED and failed.ip is None
    assert busybox_engine.network.leases() == {busybox_engine.runtime.get(first).ip: first}
    assert http_get("127.0.0.1", port) == "hello from first\n"
    # The same port twice in one spec, and a port a host process listens on, are refused too.
    duplicate = free_port()
    twice = (PortMapping(duplicate, 80), PortMapping(duplicate, 81))
    with pytest.raises(ContainerError, match=f"tcp/{duplicate} is already published"):
        start_httpd(busybox_engine, "twice", *twice)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        taken = listener.getsockname()[1]
        with pytest.raises(ContainerError, match=f"cannot publish 0.0.0.0:{taken}->80/tcp"):
            start_httpd(busybox_engine, "host-owned", PortMapping(taken, 80))
    assert {pub["container"] for pub in busybox_engine.network.published().values()} == {first}


def test_stop_and_cleanup_remove_every_rule(busybox_engine: Engine) -> None:
    runtime, bridge = busybox_engine.runtime, busybox_engine.network.bridge_name
    port, other_port = free_port(), free_port()
    web = start_httpd(busybox_engine, "web", PortMapping(port, 80), PortMapping(port, 80, "udp"))
    start_httpd(busybox_engine, "other", PortMapping(other_port, 80))
    assert http_get("127.0.0.1", port) == "hello from web\n"
    assert len(iptables_rules(nat.container_tag(bridge, web))) == 4
    runtime.stop(web, timeout=2)
    assert iptables_rules(nat.container_tag(bridge, web)) == []
    assert not accepts(port)
    assert http_get("127.0.0.1", other_port) == "hello from other\n"  # the other keeps its rules
    # A restart publishes again, at the container's new address.
    runtime.start(web)
    assert http_get("127.0.0.1", port) == "hello from web\n"
    runtime.cleanup_all(timeout=1)
    assert iptables_rules(nat.bridge_tag(bridge)) == []
    assert not (busybox_engine.network.root / "ports.json").exists()
    assert not accepts(port) and not accepts(other_port)


def test_network_none_has_only_loopback(busybox_engine: Engine) -> None:
    script = "ls /sys/class/net; tail -n +2 /proc/net/route | wc -l"  # no route either
    assert run_output(busybox_engine, script, network="none") == (0, ["lo", "0"])
    assert busybox_engine.network.leases() == {}


def test_port_mappings_parse_validate_and_persist() -> None:
    assert PortMapping.parse("8080:80") == PortMapping(8080, 80)
    assert PortMapping.parse("127.0.0.1:53:5353/udp") == PortMapping(53, 5353, "udp", "127.0.0.1")
    for bad in ("80", "0:80", "80:65536", "a:80", "80:80/sctp", "host:80:80", "1:2:3:4"):
        with pytest.raises(ContainerError):
            PortMapping.parse(bad)
    with pytest.raises(ContainerError, match="bridge networks only"):
        ContainerSpec("x", ("/l",), ("true",), network="none", ports=(PortMapping(80, 80),))
    spec = ContainerSpec("x", ("/l",), ("true",), ports=(PortMapping(80, 81, "udp"),))
    assert ContainerSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    older = {key: value for key, value in asdict(spec).items() if key != "ports"}
    assert ContainerSpec.from_json(older).ports == ()


def test_published_udp_port_echoes_from_host_loopback_and_from_a_container(
    busybox_engine: Engine,
) -> None:
    port = free_udp_port()
    server_id = start_sleeper(busybox_engine, PortMapping(port, UDP_PORT, "udp"))
    client_id = start_sleeper(busybox_engine)
    gateway = busybox_engine.network.gateway
    with udp_socket_in(busybox_engine, server_id) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host_client, \
            udp_socket_in(busybox_engine, client_id) as container_client:
        server.bind(("0.0.0.0", UDP_PORT))
        host_client.settimeout(DATAGRAM_TIMEOUT_S)
        # From the host's loopback (OUTPUT DNAT); masqueraded, as the container cannot answer 127/8.
        peer, source = udp_echo_once(server, host_client, ("127.0.0.1", port))
        assert peer[0] == gateway and source == ("127.0.0.1", port)
        # From another container through the host's address (PREROUTING DNAT, hairpin).
        peer, source = udp_echo_once(server, container_client, (gateway, port))
        assert peer[0] == gateway and source == (gateway, port)
    tag = nat.container_tag(busybox_engine.network.bridge_name, server_id)
    assert len(iptables_rules(tag)) == 2 and all("-p udp" in rule for rule in iptables_rules(tag))
    assert set(busybox_engine.network.published()) == {f"udp/{port}"}


def test_a_restarted_udp_container_gets_datagrams_of_a_flow_it_had_before(
    busybox_engine: Engine,
) -> None:
    """A UDP flow keeps its conntrack entry, NAT to the old address included, while datagrams
    keep coming; after a restart at a new address they must reach the new one."""
    port = free_udp_port()
    runtime = busybox_engine.runtime
    container_id = start_sleeper(busybox_engine, PortMapping(port, UDP_PORT, "udp"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(DATAGRAM_TIMEOUT_S)
        client.bind(("127.0.0.1", 0))  # one source port: one conntrack flow throughout
        with udp_socket_in(busybox_engine, container_id) as server:
            server.bind(("0.0.0.0", UDP_PORT))
            udp_echo_once(server, client, ("127.0.0.1", port))
        old_ip = runtime.get(container_id).ip
        runtime.stop(container_id, timeout=1)
        runtime.start(container_id)
        assert runtime.get(container_id).ip != old_ip
        with udp_socket_in(busybox_engine, container_id) as server:
            server.bind(("0.0.0.0", UDP_PORT))
            udp_echo_once(server, client, ("127.0.0.1", port))
