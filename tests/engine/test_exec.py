"""`Runtime.exec`: a process joins a running container's namespaces and cgroup, confined like
the app, with no host fd and no way back to the host's python; with a pty when asked."""

from __future__ import annotations

import contextlib
import os
import select
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from testkit import wait_until

from paas.engine.containers import Container, ContainerSpec
from paas.engine.engine import Engine
from paas.engine.runtime.cgroups import procs
from paas.engine.runtime.exec import exec_spec, run_exec
from paas.errors import ContainerError

# The app writes a file and says its own view of the world, then waits.
APP = "echo from-app > /tmp/app-file; grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status " \
      "> /tmp/app-status; exec sleep 1000"
STATUS = "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status"


def start(engine: Engine, network: str = "bridge") -> Container:
    image = engine.images.get("busybox")
    spec = ContainerSpec(
        "exec-target", tuple(str(d) for d in engine.images.lowerdirs(image)), ("sh", "-c", APP),
        env=("FROM_RUN=1",), hostname="exec-host", network=network,  # type: ignore[arg-type]
    )
    container = engine.runtime.start(engine.runtime.create(spec).id)
    wait_until(lambda: exec_out(engine, container, "cat /tmp/app-status")[0] == 0,
               what="the app's first lines")
    return container


@pytest.fixture
def target(busybox_engine: Engine) -> Iterator[Container]:
    yield start(busybox_engine)


@contextlib.contextmanager
def no_input() -> Iterator[int]:
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def exec_out(engine: Engine, container: Container, script: str, **kwargs: object) -> tuple[int, str]:
    """Exit code and stdout+stderr of `sh -c script` exec'd into the container."""
    with tempfile.TemporaryFile() as out, no_input() as nothing:
        code = engine.runtime.exec(container.id, ["sh", "-c", script], stdin=nothing,
                                   stdout=out.fileno(), stderr=out.fileno(),
                                   **kwargs)  # type: ignore[arg-type]
        out.seek(0)
        return code, out.read().decode()


def test_exec_sees_the_containers_processes_hostname_files_and_network(
    busybox_engine: Engine, target: Container
) -> None:
    code, out = exec_out(busybox_engine, target, "ps -o pid,args; hostname; cat /tmp/app-file; "
                         "ip -4 -o addr show eth0")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[1].split()[0] == "1" and "paas-shim" in lines[1]  # our init is PID 1
    assert "sleep 1000" in out and "pytest" not in out
    assert len([line for line in lines if line.split()[0].isdigit()]) == 4  # init, app, sh, ps
    assert "exec-host" in lines and "from-app" in lines
    assert f"inet {target.ip}/" in out
    code, out = exec_out(busybox_engine, target, "ls /")
    assert code == 0 and "bin" in out.split() and "work" not in out.split()  # not the host's /


def test_exec_is_counted_in_the_containers_cgroup(busybox_engine: Engine, target: Container) -> None:
    paths = busybox_engine.runtime.cgroups.paths(target.id)
    before = set(procs(paths[0]))
    code, out = exec_out(busybox_engine, target, "cat /proc/self/cgroup")
    assert code == 0
    assert set(procs(paths[0])) == before  # gone again
    if busybox_engine.runtime.cgroups.unified:  # its own cgroup namespace: the group is its root
        assert out == "0::/\n"
    else:
        assert f"pids:/{busybox_engine.runtime.cgroups.name}/{target.id}\n" in out


def cmdlines(path: Path) -> bytes:
    found = b""
    for pid in procs(path):
        with contextlib.suppress(FileNotFoundError):
            found += Path(f"/proc/{pid}/cmdline").read_bytes() + b"\n"
    return found


def test_exec_is_in_the_cgroup_while_it_runs(busybox_engine: Engine, target: Container) -> None:
    paths = busybox_engine.runtime.cgroups.paths(target.id)
    r, w = os.pipe()
    before = len(procs(paths[0]))
    pid = os.fork()
    if pid == 0:  # a second exec in the background: its sleep is seen from the host
        os.close(r)
        nothing = os.open(os.devnull, os.O_RDONLY)
        os._exit(busybox_engine.runtime.exec(target.id, ["sleep", "3"], stdin=nothing, stdout=w,
                                             stderr=w))
    os.close(w)
    try:
        wait_until(lambda: b"sleep\x003\x00" in cmdlines(paths[0]), what="the exec in the cgroup")
        assert len(procs(paths[0])) == before + 2  # the exec'd sleep and its waiting helper
        assert busybox_engine.runtime.stats(target.id).pids == before + 2
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(r)
    assert os.waitstatus_to_exitcode(status) == 0


def test_exec_is_confined_like_the_app_with_only_fds_0_to_2(
    busybox_engine: Engine, target: Container
) -> None:
    _, app = exec_out(busybox_engine, target, "cat /tmp/app-status")
    code, mine = exec_out(busybox_engine, target, STATUS)
    assert code == 0 and mine == app and "Seccomp:\t2" in mine and "NoNewPrivs:\t1" in mine
    assert exec_out(busybox_engine, target, "ls /proc/$$/fd; true") == (0, "0\n1\n2\n")
    # Even given a host file as stdout, it holds pipes: nothing to reopen via /proc/self/fd.
    code, out = exec_out(busybox_engine, target, "readlink /proc/$$/fd/0; readlink /proc/$$/fd/1")
    assert code == 0 and [line[:6] for line in out.splitlines()] == ["pipe:[", "pipe:["]


def test_exec_cannot_reach_the_host_binary(busybox_engine: Engine, target: Container) -> None:
    assert exec_out(busybox_engine, target, "readlink /proc/self/exe") == (0, "/bin/busybox\n")
    # From another exec'd shell, as the app would: every process is a container binary or
    # hidden; none is the host's python.
    code, out = exec_out(busybox_engine, target,
                         "for p in /proc/[0-9]*; do readlink $p/exe; done; true")
    assert code == 0 and "python" not in out


def test_exit_codes_user_env_and_workdir(busybox_engine: Engine, target: Container) -> None:
    assert exec_out(busybox_engine, target, "exit 7")[0] == 7
    assert exec_out(busybox_engine, target, "kill -9 $$")[0] == 137
    code, out = exec_out(busybox_engine, target, "id -un; echo $FROM_RUN $EXTRA; pwd",
                         user="nobody", env=["EXTRA=2"], workdir="/tmp")
    assert (code, out) == (0, "nobody\n1 2\n/tmp\n")
    code, out = exec_out(busybox_engine, target, STATUS, user="nobody")
    assert "CapEff:\t0000000000000000" in out
    with tempfile.TemporaryFile() as err, no_input() as nothing:
        code = busybox_engine.runtime.exec(target.id, ["no-such-command"], stdin=nothing,
                                           stderr=err.fileno())
        err.seek(0)
        assert code == 127 and b"no-such-command" in err.read()


def test_exec_reads_the_stdin_it_is_given(busybox_engine: Engine, target: Container) -> None:
    r, w = os.pipe()
    os.write(w, b"typed in\n")
    os.close(w)
    with tempfile.TemporaryFile() as out:
        code = busybox_engine.runtime.exec(target.id, ["cat"], stdin=r, stdout=out.fileno())
        os.close(r)
        out.seek(0)
        assert (code, out.read()) == (0, b"typed in\n")


def test_exec_into_a_stopped_container_is_an_error(busybox_engine: Engine, target: Container) -> None:
    busybox_engine.runtime.stop(target.id, timeout=0)
    with pytest.raises(ContainerError, match="not running"), no_input() as nothing:
        busybox_engine.runtime.exec(target.id, ["true"], stdin=nothing)
    with pytest.raises(ContainerError, match="unable to find user"):
        exec_out(busybox_engine, start(busybox_engine, "none"), "true", user="nosuchuser")


def test_a_recycled_pid_is_never_joined(busybox_engine: Engine, target: Container) -> None:
    spec = exec_spec(target, busybox_engine.runtime.cgroups.paths(target.id), ["true"], env=(),
                     user=None, workdir=None, tty=False, winsize=None)
    with no_input() as nothing:
        assert run_exec(spec, (nothing, 1, 2)) == 0
        with pytest.raises(ContainerError, match="not running"):  # same pid, another process
            run_exec(replace(spec, starttime=spec.starttime + 1), (nothing, 1, 2))


def test_tty_exec_gets_a_pty_of_the_container(busybox_engine: Engine, target: Container) -> None:
    def attach(master: int, done: int) -> None:
        os.write(master, b"tty; stty size; exit 3\n")
        seen = b""
        while not select.select([done], [], [], 0)[0] or select.select([master], [], [], 0)[0]:
            if select.select([master], [], [], 10)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # EIO: the last holder of the slave is gone
                    break
        outputs.append(seen.decode())

    outputs: list[str] = []
    code = busybox_engine.runtime.exec(target.id, ["sh"], tty=True, winsize=(33, 97),
                                       attach=attach)
    assert code == 3
    assert "/dev/pts/0" in outputs[0] and "33 97" in outputs[0]


def fd_targets(pid: int) -> dict[str, str]:
    """fd -> what it points at; an fd closed while we look (the shim closes its report
    fd once it said "ok") is left out."""
    targets = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            targets[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
    return targets


def test_exec_cannot_follow_the_inits_fds_to_the_host(busybox_engine: Engine) -> None:
    # The init holds its host state dir open; the (privileged) exec helper reads the
    # container's /etc/passwd. Pointed through /proc/1/fd at a host file, it must be refused.
    image = busybox_engine.images.get("busybox")
    spec = ContainerSpec("fd-target", tuple(str(d) for d in busybox_engine.images.lowerdirs(image)),
                         ("sleep", "1000"), network="none")
    container = busybox_engine.runtime.start(busybox_engine.runtime.create(spec).id)
    init = container.state.pid
    state_dir = busybox_engine.runtime.store.dir(container.id)
    [fd] = [n for n, target in fd_targets(init).items() if target == str(state_dir)]
    assert exec_out(busybox_engine, container, f"ln -sf /proc/1/fd/{fd}/spec.json /etc/passwd")[0] == 0
    with pytest.raises(ContainerError, match="Permission denied"):
        exec_out(busybox_engine, container, "id -u", user="someone")
