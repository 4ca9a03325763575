"""Runtime against the real thing: namespaces, overlayfs, cgroups and veths, as root.

The image is a busybox rootfs built from the host's static busybox. After every test the
fixture checks that nothing is left: no mount, no link, no cgroup, no process.
"""

from __future__ import annotations

import http.client
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from paas.engine.containers import Bind, ContainerSpec, ContainerStatus
from paas.engine.network import Network, veth_names
from paas.engine.runtime import Runtime
from paas.engine.runtime.cgroups import Cgroups
from paas.engine.runtime.process import ProcessRef, is_alive
from paas.errors import ContainerError

BUSYBOX = "/bin/busybox"
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
SUBNET = f"10.{random.randint(210, 249)}.{random.randint(0, 255)}.0/24"
BRIDGE = f"pt{os.getpid() % 100000}{random.randint(0, 999)}"


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("busybox") / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
    for name in applets.stdout.split():
        if name != "busybox":
            os.symlink("busybox", root / "bin" / name)
    for sub in ("etc", "tmp", "root", "www"):
        (root / sub).mkdir()
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "www" / "index.html").write_text("hello from the container\n")
    return str(root)


def _leftovers(rt: Runtime, root: Path, ids: list[str], pids: list[ProcessRef]) -> list[str]:
    found = [line for line in Path("/proc/mounts").read_text().splitlines() if str(root) in line]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = [BRIDGE, *(veth_names(i)[0] for i in ids)]
    found += [f"link {name}" for name in names if f" {name}:" in links or f" {name}@" in links]
    found += [f"cgroup {p}" for p in rt.cgroups.parents if p.exists()]
    found += [f"process {ref.pid}" for ref in pids if is_alive(ref)]
    return found


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    root = tmp_path / "engine"
    rt = Runtime(root, Network(root, BRIDGE, SUBNET))
    try:
        yield rt
    finally:
        containers = rt.list()
        refs = [ProcessRef(c.state.pid, c.state.starttime or 0) for c in containers if c.state.pid]
        rt.cleanup_all(timeout=1)
        assert _leftovers(rt, root, [c.id for c in containers], refs) == []


def spec(image: str, *argv: str, **kwargs: object) -> ContainerSpec:
    kwargs.setdefault("network", "none")
    return ContainerSpec(name="test", lowerdirs=(image,), argv=argv, **kwargs)  # type: ignore[arg-type]


def run(rt: Runtime, image: str, script: str, **kwargs: object) -> tuple[int, list[str]]:
    lines: list[str] = []
    result = rt.run(spec(image, "sh", "-c", script, **kwargs), lines.append)
    return result.exit_code, lines


def wait_for_http(ip: str, port: int, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection(ip, port, timeout=1)
            conn.request("GET", "/index.html")
            return conn.getresponse().read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_true_and_exit_codes(runtime: Runtime, image: str) -> None:
    lines: list[str] = []
    result = runtime.run(spec(image, "/bin/true"), lines.append)
    assert (result.exit_code, lines) == (0, [])
    assert result.upper_dir.is_dir()
    assert run(runtime, image, "echo hi") == (0, ["hi"])
    assert run(runtime, image, "echo out; echo err >&2; exit 3") == (3, ["out", "err"])


def test_app_is_child_of_init_and_sees_only_its_processes(runtime: Runtime, image: str) -> None:
    script = "echo $$; grep PPid /proc/$$/status; ls /proc | grep -E '^[0-9]+$'"
    code, lines = run(runtime, image, script)
    assert code == 0
    assert lines[0] == "2"
    assert lines[1].split() == ["PPid:", "1"]
    assert all(int(pid) < 10 for pid in lines[2:])


def test_hostname_env_user_workdir(runtime: Runtime, image: str) -> None:
    script = "hostname; cat /etc/hostname; echo $FOO; id -u; pwd; echo $HOME"
    code, lines = run(
        runtime, image, script, hostname="web-1", env=("FOO=bar",), user="nobody", workdir="/tmp"
    )
    assert (code, lines) == (0, ["web-1", "web-1", "bar", "65534", "/tmp", "/nonexistent"])


def test_cannot_see_the_host_root(runtime: Runtime, image: str, tmp_path: Path) -> None:
    marker = tmp_path / "host-marker"
    marker.write_text("secret")
    code, lines = run(runtime, image, f"test -e {marker} && echo visible; ls /")
    assert code == 0
    assert "visible" not in lines
    assert sorted(lines) == ["bin", "dev", "etc", "proc", "root", "sys", "tmp", "www"]


def test_devices_and_mounts(runtime: Runtime, image: str) -> None:
    script = "echo x > /dev/null && head -c 4 /dev/zero | wc -c; ls /dev/pts; test -d /dev/shm"
    code, lines = run(runtime, image, script)
    assert code == 0
    assert lines[0] == "4"
    assert "ptmx" in lines


def test_binds_read_only_and_writable(runtime: Runtime, image: str, tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "file").write_text("from host\n")
    binds = (Bind(str(ro), "/ro", readonly=True), Bind(str(rw), "/data/rw"))
    script = "cat /ro/file; touch /ro/x 2>/dev/null || echo ro-denied; echo made > /data/rw/out"
    code, lines = run(runtime, image, script, binds=binds)
    assert (code, lines) == (0, ["from host", "ro-denied"])
    assert (rw / "out").read_text() == "made\n"


def test_network_none_has_only_loopback(runtime: Runtime, image: str) -> None:
    assert run(runtime, image, "ls /sys/class/net", network="none") == (0, ["lo"])


def test_bridge_container_serves_http_to_the_host(runtime: Runtime, image: str) -> None:
    web = runtime.create(
        spec(image, "httpd", "-f", "-p", "8080", "-h", "/www", network="bridge",
             labels={"app": "demo", "process": "web"})
    )
    runtime.create(spec(image, "true", labels={"app": "other"}))
    started = runtime.start(web.id)
    assert started.status is ContainerStatus.RUNNING
    assert started.pid is not None and started.ip is not None
    assert started.ip.startswith(SUBNET.rsplit(".", 1)[0] + ".")
    assert wait_for_http(started.ip, 8080) == "hello from the container\n"
    assert str(runtime.root) not in Path("/proc/mounts").read_text()  # mounts stay inside
    assert [c.id for c in runtime.list({"app": "demo"})] == [web.id]
    assert len(runtime.list()) == 2
    stopped = runtime.stop(web.id, timeout=5)
    assert stopped.status is ContainerStatus.EXITED
    assert stopped.exit_code == 128 + signal.SIGTERM
    assert runtime.network.leases() == {}


def test_stop_falls_back_to_sigkill(runtime: Runtime, image: str) -> None:
    script = "trap '' TERM; echo ready; while :; do sleep 1; done"
    stubborn = runtime.create(spec(image, "sh", "-c", script))
    runtime.start(stubborn.id)
    log = runtime.logs_path(stubborn.id)
    deadline = time.monotonic() + 5
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)  # the trap must be set before we signal
    began = time.monotonic()
    stopped = runtime.stop(stubborn.id, timeout=0.5)
    assert time.monotonic() - began >= 0.5
    assert stopped.status is ContainerStatus.EXITED
    assert stopped.exit_code == 128 + signal.SIGKILL


def test_start_failure_is_reported(runtime: Runtime, image: str) -> None:
    container = runtime.create(spec(image, "no-such-command"))
    with pytest.raises(ContainerError, match="cannot run 'no-such-command'"):
        runtime.start(container.id)
    failed = runtime.get(container.id)
    assert failed.status is ContainerStatus.EXITED
    assert failed.state.error and "no-such-command" in failed.state.error
    assert "no-such-command" in runtime.logs_path(container.id).read_text()


def test_setup_failure_is_reported(runtime: Runtime, image: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-layer")
    bad = ContainerSpec(name="bad", lowerdirs=(missing,), argv=("true",), network="none")
    lines: list[str] = []
    with pytest.raises(ContainerError, match="overlay"):
        runtime.run(bad, lines.append)
    assert any("overlay" in line for line in lines)


def test_limits_are_applied(runtime: Runtime, image: str) -> None:
    limited = runtime.create(
        spec(image, "sleep", "1000", memory_bytes=64 * 1024 * 1024, cpus=0.5, pids_limit=50)
    )
    pid = runtime.start(limited.id).pid
    cgroups: Cgroups = runtime.cgroups
    paths = {p.parent.parent.name: p for p in cgroups.paths(limited.id)}
    if cgroups.unified:
        (path,) = paths.values()
        assert (path / "memory.max").read_text().strip() == str(64 * 1024 * 1024)
        assert (path / "cpu.max").read_text().split()[0] == "50000"
        assert (path / "pids.max").read_text().strip() == "50"
    else:
        assert (paths["memory"] / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
        assert (paths["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (paths["pids"] / "pids.max").read_text().strip() == "50"
    assert f"{cgroups.name}/{limited.id}" in Path(f"/proc/{pid}/cgroup").read_text()
    runtime.stop(limited.id, timeout=2)
    assert not any(p.exists() for p in cgroups.paths(limited.id))


STARTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from paas.engine.containers import ContainerSpec
    from paas.engine.network import Network
    from paas.engine.runtime import Runtime
    root, bridge, subnet, image = sys.argv[1:]
    rt = Runtime(Path(root), Network(Path(root), bridge, subnet))
    spec = ContainerSpec("survivor", (image,), ("sleep", "1000"), network="bridge")
    print(rt.start(rt.create(spec).id).id, flush=True)
    time.sleep(1000)
    """
)


def test_container_outlives_the_process_that_started_it(runtime: Runtime, image: str) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(runtime.root), BRIDGE, SUBNET, image],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert starter.stdout is not None
        container_id = starter.stdout.readline().strip()
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait()
    (listed,) = runtime.list()
    assert (listed.id, listed.status) == (container_id, ContainerStatus.RUNNING)
    assert listed.pid is not None and is_alive(ProcessRef(listed.pid, listed.state.starttime or 0))
    stopped = runtime.stop(container_id, timeout=5)
    assert stopped.status is ContainerStatus.EXITED
    assert stopped.exit_code == 128 + signal.SIGTERM


def test_exit_code_of_a_started_container_is_recorded(runtime: Runtime, image: str) -> None:
    container = runtime.create(spec(image, "sh", "-c", "echo bye; exit 7", network="host"))
    runtime.start(container.id)
    finished = runtime.wait(container.id, timeout=5)
    assert (finished.status, finished.exit_code) == (ContainerStatus.EXITED, 7)
    assert runtime.logs_path(container.id).read_text().endswith("Z stdout F bye\n")
    assert runtime.get(container.id).exit_code == 7


def test_remove_deletes_the_record(runtime: Runtime, image: str) -> None:
    container = runtime.create(spec(image, "sleep", "1000"))
    runtime.start(container.id)
    runtime.remove(container.id, timeout=2)
    assert runtime.list() == []
    with pytest.raises(ContainerError):
        runtime.get(container.id)
