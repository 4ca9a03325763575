"""The forked launcher (runtime.spawn + runtime.launch): what the container's init inherits
from the engine process, starts from threads, and no zombie left behind in the engine."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from testkit import wait_until

from paas.engine.containers import ContainerSpec, ContainerStatus
from paas.engine.engine import Engine
from paas.engine.runtime.spawn import Launch
from paas.errors import ContainerError

SECRET = "PAAS_TEST_LAUNCH_SECRET"


def spec(engine: Engine, *argv: str, **kwargs: object) -> ContainerSpec:
    image = engine.images.get("busybox")
    lowerdirs = tuple(str(p) for p in engine.images.lowerdirs(image))
    kwargs.setdefault("network", "none")
    return ContainerSpec(name="launch", lowerdirs=lowerdirs, argv=argv, **kwargs)  # type: ignore[arg-type]


def stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return raw[raw.rindex(b")") + 2 :].decode().split()


def zombie_children() -> list[int]:
    """Our children that exited and were never reaped."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = stat_fields(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == os.getpid() and fields[0] == "Z":
                found.append(int(entry.name))
    return found


def test_the_init_sees_nothing_of_the_engines_environment(busybox_engine: Engine) -> None:
    """The secret is in the engine's original environment block (it was started with it),
    which a fork would copy: neither /proc/1/environ nor the app may show it."""
    runtime = busybox_engine.runtime
    network = runtime.network
    script = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from paas.engine.containers import ContainerSpec
        from paas.engine.network import Network
        from paas.engine.runtime import Runtime
        root = Path(sys.argv[1])
        runtime = Runtime(root, Network(root / "network", sys.argv[2], sys.argv[3]))
        spec = ContainerSpec(name="env", lowerdirs=tuple(sys.argv[4:]),
                             argv=("sh", "-c", "env; echo listed; sleep 60"), network="none")
        container = runtime.start(runtime.create(spec).id)
        assert os.environ["{SECRET}"] == "hunter2"
        print(container.id, container.pid)
    """)
    image = busybox_engine.images.get("busybox")
    lowerdirs = [str(p) for p in busybox_engine.images.lowerdirs(image)]
    out = subprocess.run(
        [sys.executable, "-c", script, str(runtime.root), network.bridge_name, str(network.subnet),
         *lowerdirs],
        env={**os.environ, SECRET: "hunter2"}, capture_output=True, text=True, check=True,
    ).stdout
    container_id, pid = out.split()
    assert runtime.get(container_id).status is ContainerStatus.RUNNING
    log = runtime.logs_path(container_id)
    wait_until(lambda: "listed" in log.read_text(), what="the container's env")
    assert SECRET not in log.read_text()
    assert b"hunter2" not in Path(f"/proc/{pid}/environ").read_bytes()
    runtime.remove(container_id, timeout=0)


def test_the_init_holds_no_fd_and_no_session_of_the_engine(
    busybox_engine: Engine, tmp_path: Path
) -> None:
    runtime = busybox_engine.runtime
    marker = tmp_path / "engine-file"
    with open(marker, "w") as held:
        os.set_inheritable(held.fileno(), True)  # even an fd an exec would pass on
        container = runtime.start(runtime.create(spec(busybox_engine, "sleep", "60")).id)
    assert container.pid is not None
    fds = Path(f"/proc/{container.pid}/fd")
    targets = [os.readlink(fd) for fd in fds.iterdir()]
    assert str(marker) not in targets
    fields = stat_fields(container.pid)
    assert int(fields[1]) != os.getpid()  # reparented: the launcher exited
    assert int(fields[3]) != os.getsid(0)  # a new session: a terminal's ^C stays with us
    runtime.remove(container.id, timeout=0)


def test_starts_from_several_threads_at_once(busybox_engine: Engine) -> None:
    runtime = busybox_engine.runtime
    results: dict[int, tuple[int, list[str]]] = {}
    failures: list[BaseException] = []

    def run_one(n: int) -> None:
        lines: list[str] = []
        try:
            result = runtime.run(spec(busybox_engine, "echo", f"thread {n}"), lines.append)
            runtime.remove(result.container_id)
            results[n] = (result.exit_code, lines)
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=run_one, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert results == {n: (0, [f"thread {n}"]) for n in range(4)}


def test_no_zombie_is_left_after_starts(busybox_engine: Engine) -> None:
    runtime = busybox_engine.runtime
    for n in range(5):
        result = runtime.run(spec(busybox_engine, "true"), lambda line: None)
        runtime.remove(result.container_id)
        failed = runtime.create(spec(busybox_engine, f"no-such-command-{n}"))
        with pytest.raises(ContainerError, match="cannot run"):
            runtime.start(failed.id)
    assert zombie_children() == []


def test_a_launcher_failure_is_reported_and_reaped(busybox_engine: Engine, tmp_path: Path) -> None:
    runtime = busybox_engine.runtime
    container = runtime.create(spec(busybox_engine, "true"))
    launch_spec = runtime.starter.launch_spec(container.id, container.spec, None)
    output = tmp_path / "output"
    with open(output, "wb") as out:
        launch = Launch(launch_spec, out.fileno(), [tmp_path / "no-such-cgroup" / "tasks"])
        try:
            with pytest.raises(ContainerError, match="cannot join cgroup"):
                launch.read_pid(10)
        finally:
            launch.close()
    assert "paas: container failed to start: cannot join cgroup" in output.read_text()
    assert zombie_children() == []


def test_the_launcher_wipes_the_engines_environment_and_command_line() -> None:
    """Before the init execs anything, its memory is a copy of the engine's: the environment
    block (/proc/PID/environ), argv (/proc/PID/cmdline) and getenv must show nothing of it."""
    script = textwrap.dedent(f"""
        import ctypes, os
        from paas.engine.runtime import launch
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            launch._forget_engine()
            with open("/proc/self/environ", "rb") as f:
                environ = f.read()
            with open("/proc/self/cmdline", "rb") as f:
                cmdline = f.read()
            getenv = ctypes.CDLL(None).getenv
            getenv.restype = ctypes.c_char_p
            seen = (b"{SECRET}" in environ, b"hunter2" in environ, b"secret-arg" in cmdline,
                    getenv(b"{SECRET}"), os.environ.get("{SECRET}"), cmdline.rstrip(b"\\0"))
            os.write(write_end, repr(seen).encode())
            os._exit(0)
        os.close(write_end)
        print(os.read(read_end, 4096).decode())
        os.waitpid(pid, 0)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script, "secret-arg"], env={**os.environ, SECRET: "hunter2"},
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.strip() == "(False, False, False, None, None, b'paas-init')"
