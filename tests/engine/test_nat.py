"""Egress NAT: a build's RUN step and a started container reach a host outside the bridge,
masqueraded; the outside host reaches a published port; teardown removes every rule. The
"outside" host is a network namespace this test makes and deletes."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testkit import free_port, iptables_rules, stop_process, wait_until

from paas.engine import nat
from paas.engine.containers import ContainerSpec, PortMapping
from paas.engine.dockerfile.builder import build_dockerfile
from paas.engine.engine import Engine

# Answers one HTTP request with the address it came from, then exits.
SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("ready", flush=True)
conn, (peer, _) = s.accept()
conn.recv(65536)
body = f"hello from outside, you are {peer}\\n".encode()
conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
conn.close()
"""
# Asks the given address for /index.html, prints the answer.
CLIENT = """
import http.client, sys
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=5)
conn.request("GET", "/index.html")
print(conn.getresponse().read().decode(), end="")
"""


@dataclass(frozen=True)
class Outside:
    netns: str
    host_ip: str  # the host's end of the link: what NAT rewrites sources to
    ip: str  # the outside host's address
    port: int
    server: subprocess.Popen[str]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def outside() -> Iterator[Outside]:
    tag = f"{random.randint(0, 10**6):06d}"
    netns, host_end, peer_end = f"pout{tag}", f"pox{tag}", f"poy{tag}"
    base = f"10.77.{random.randint(0, 255)}.{4 * random.randint(0, 63)}"
    prefix = base.rsplit(".", 1)[0]
    last = int(base.rsplit(".", 1)[1])
    host_ip, ip = f"{prefix}.{last + 1}", f"{prefix}.{last + 2}"
    server = None
    _ip("netns", "add", netns)
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", peer_end)
        _ip("link", "set", peer_end, "netns", netns)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_end)
        _ip("link", "set", host_end, "up")
        for args in (("addr", "add", f"{ip}/30", "dev", peer_end), ("link", "set", peer_end, "up"),
                     ("link", "set", "lo", "up")):
            _ip("-n", netns, *args)
        server = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", SERVER, ip, "8080"],
            stdout=subprocess.PIPE, text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield Outside(netns, host_ip, ip, 8080, server)
    finally:
        if server is not None:
            stop_process(server)
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        _ip("netns", "del", netns)


def _rules(bridge: str) -> list[str]:
    return iptables_rules(nat.bridge_tag(bridge))


def test_run_step_reaches_the_outside_through_nat(
    busybox_engine: Engine, outside: Outside, tmp_path: Path
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM busybox\nRUN wget -q -O /answer http://{outside.ip}:{outside.port}/\n"
    )
    log: list[str] = []
    image = build_dockerfile(busybox_engine.images, busybox_engine.runtime, context, log.append)
    answer = busybox_engine.images.lowerdirs(image)[0] / "answer"
    # The outside host saw the host's address, not the container's: the source was masqueraded.
    assert answer.read_text() == f"hello from outside, you are {outside.host_ip}\n", log
    bridge = busybox_engine.network.bridge_name
    assert len(_rules(bridge)) == len(nat.egress_rules(bridge, "x"))
    busybox_engine.runtime.cleanup_all(timeout=1)
    assert _rules(bridge) == []


def _busybox(engine: Engine, script: str, **kwargs: object) -> ContainerSpec:
    lowerdirs = tuple(str(d) for d in engine.images.lowerdirs(engine.images.get("busybox")))
    return ContainerSpec("nat", lowerdirs, ("sh", "-c", script), **kwargs)  # type: ignore[arg-type]


def test_started_container_reaches_the_outside_through_nat(
    busybox_engine: Engine, outside: Outside
) -> None:
    script = f"wget -q -O /answer http://{outside.ip}:{outside.port}/ && cat /answer"
    container = busybox_engine.runtime.create(_busybox(busybox_engine, script))
    busybox_engine.runtime.start(container.id)
    finished = busybox_engine.runtime.wait(container.id, timeout=10)
    assert finished.exit_code == 0
    log = busybox_engine.runtime.logs_path(container.id).read_text()
    assert log.endswith(f"Z stdout F hello from outside, you are {outside.host_ip}\n")
    assert busybox_engine.network.leases() == {}


def test_outside_host_reaches_a_published_port(busybox_engine: Engine, outside: Outside) -> None:
    port = free_port()
    script = 'mkdir /w && echo "published to $0" > /w/index.html && exec httpd -f -vv -p 80 -h /w'
    spec = _busybox(busybox_engine, script, ports=(PortMapping(port, 80),))
    container = busybox_engine.runtime.start(busybox_engine.runtime.create(spec).id)
    client = ["ip", "netns", "exec", outside.netns, sys.executable, "-c", CLIENT,
              outside.host_ip, str(port)]
    answers: list[str] = []

    def answered() -> bool:
        result = subprocess.run(client, capture_output=True, text=True, timeout=10)
        answers.append(result.stdout + result.stderr)
        return result.returncode == 0

    wait_until(answered, timeout=10, what="the published port from outside")
    assert answers[-1] == "published to sh\n"
    # The client's own address reached the container: only loopback and hairpin traffic is
    # masqueraded.
    assert outside.ip in busybox_engine.runtime.logs_path(container.id).read_text()
    busybox_engine.runtime.stop(container.id, timeout=2)
    assert subprocess.run(client, capture_output=True, timeout=10).returncode != 0


def test_egress_rules_are_idempotent_and_removed_whole() -> None:
    bridge, subnet = f"ptn{random.randint(0, 10**8):08d}", "10.78.1.0/24"
    count = len(nat.egress_rules(bridge, subnet))
    try:
        nat.ensure_egress(bridge, subnet)
        nat.ensure_egress(bridge, subnet)
        assert len(_rules(bridge)) == count
        masquerade = nat.egress_rules(bridge, subnet)[0]
        subprocess.run(["iptables", "-t", "nat", "-A", masquerade.chain, *masquerade.spec], check=True)
        assert len(_rules(bridge)) == count + 1  # a duplicate someone else added goes too
        other = f"{bridge}x"  # a bridge whose name starts with ours keeps its rules
        nat.ensure_egress(other, subnet)
        nat.remove_bridge(bridge)
        assert _rules(bridge) == [] and len(_rules(other)) == count
    finally:
        nat.remove_bridge(bridge)
        nat.remove_bridge(f"{bridge}x")
    assert _rules(bridge) == [] and _rules(f"{bridge}x") == []
