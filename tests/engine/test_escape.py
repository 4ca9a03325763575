"""The escape suite: from inside a real busybox container, every way out must fail.

Each test runs the attempt as the app would (a shell script in the container) and asserts on
what the container saw; images with hostile layers (a /dev symlink, a /proc/self/fd WORKDIR)
are committed on top of busybox. Calls busybox has no applet for (keyctl, ptrace, bpf, clone
with namespace flags) are tried against the same filter in test_isolation.py.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from paas.engine.containers import ContainerSpec
from paas.engine.engine import Engine
from paas.engine.images import Image
from paas.errors import ContainerError


def run(engine: Engine, script: str, image: Image | None = None, **kwargs: object) -> list[str]:
    """Run `script` in the image (busybox by default); its output lines, then `exit N`."""
    image = image or engine.images.get("busybox")
    lowerdirs = tuple(str(d) for d in engine.images.lowerdirs(image))
    kwargs.setdefault("network", "none")
    kwargs.setdefault("workdir", image.config.working_dir or "/")
    kwargs.setdefault("user", image.config.user or "root")
    spec = ContainerSpec("escape", lowerdirs, ("sh", "-c", script), **kwargs)  # type: ignore[arg-type]
    lines: list[str] = []
    result = engine.runtime.run(spec, lines.append, timeout=20)
    engine.runtime.remove(result.container_id)
    return [*lines, f"exit {result.exit_code}"]


def commit_layer(
    engine: Engine, tmp_path: Path, symlinks: dict[str, str], working_dir: str = ""
) -> Image:
    """busybox plus a layer of `symlinks` (path -> target), optionally with a WORKDIR."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, target in symlinks.items():
            info = tarfile.TarInfo(path)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
    layer = tmp_path / "layer.tar"
    layer.write_bytes(buffer.getvalue())
    base = engine.images.get("busybox")
    config = base.config.replace(working_dir=working_dir or base.config.working_dir)
    return engine.images.commit(base, layer, config, "hostile layer")


def test_mount_fails(busybox_engine: Engine) -> None:
    script = (
        "mkdir -p /mnt; mount -t tmpfs none /mnt && echo MOUNTED; "
        "mount --bind /bin /mnt && echo BOUND; mount -o remount,rw /sys && echo REMOUNTED; "
        "grep -c ' /mnt ' /proc/mounts"
    )
    assert run(busybox_engine, script)[-2:] == ["0", "exit 1"]


def test_unshare_fails(busybox_engine: Engine) -> None:
    for flags in ("-m", "-U", "-n", "-p -f", "-u", "-i", "-C"):
        lines = run(busybox_engine, f"unshare {flags} true && echo ESCAPED")
        assert "ESCAPED" not in lines and lines[-1] != "exit 0", flags


def test_setns_fails(busybox_engine: Engine) -> None:
    # PID 1 is our init: its namespace files are closed to the app (not dumpable) ...
    lines = run(busybox_engine, "nsenter -t 1 -m -u -i -n -p true && echo JOINED")
    assert "JOINED" not in lines and lines[-1] != "exit 0"
    # ... and setns itself is denied, even into the app's own namespaces.
    lines = run(busybox_engine, "nsenter -t $$ -u true && echo JOINED")
    assert any("Operation not permitted" in line for line in lines), lines
    assert "JOINED" not in lines


def test_keyctl_and_other_denied_calls_are_filtered(busybox_engine: Engine) -> None:
    # No applet calls keyctl; the filter that denies it (tested call by call in
    # test_isolation.py) must be the one the app runs under, with no way to lift it.
    lines = run(busybox_engine, "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status")
    assert lines == ["NoNewPrivs:\t1", "Seccomp:\t2", "exit 0"]
    assert run(busybox_engine, "cat /proc/keys 2>/dev/null | wc -c")[0] == "0"


def test_proc_sysrq_and_sys_writes_fail(busybox_engine: Engine) -> None:
    script = (
        "echo h > /proc/sysrq-trigger && echo SYSRQ; "
        "echo evil > /proc/sys/kernel/hostname && echo SYSCTL; "
        "echo 3 > /proc/sys/vm/drop_caches && echo DROPPED; "
        "sysctl -w kernel.domainname=evil && echo SYSCTL2; hostname"
    )
    lines = run(busybox_engine, script, hostname="inside")
    assert not {"SYSRQ", "SYSCTL", "DROPPED", "SYSCTL2"} & set(lines)
    # stdout and stderr are separate pipes: only the order within each stream is kept
    assert "inside" in lines and lines[-1] == "exit 0"


def test_kcore_and_masked_proc_files_read_nothing(busybox_engine: Engine) -> None:
    script = "for f in kcore keys timer_list sched_debug; do cat /proc/$f 2>/dev/null; done | wc -c"
    assert run(busybox_engine, script) == ["0", "exit 0"]


def test_host_processes_are_invisible(busybox_engine: Engine) -> None:
    lines = run(busybox_engine, "ps -o pid,comm | tail -n +2")
    pids = [int(line.split()[0]) for line in lines[:-1]]
    assert lines[-1] == "exit 0"
    assert pids and max(pids) < 10, lines
    assert str(os.getpid()) not in {line.split()[0] for line in lines[:-1]}


def test_host_root_is_unreachable_through_proc(busybox_engine: Engine, tmp_path: Path) -> None:
    marker = tmp_path.parent.name  # a host path the container must never see
    script = (
        "ls /proc/1/root/ && echo ROOT1; ls /proc/1/cwd/ && echo CWD1; "
        "readlink /proc/1/exe && echo EXE1; cat /proc/1/environ && echo ENV1; "
        "for n in 0 1 2 3 4 5 6 7 8 9 10 11 12; do "
        "  ls /proc/1/fd/$n/ 2>/dev/null && echo FD1-$n; readlink /proc/1/fd/$n && echo FD1-$n; "
        "  ls /proc/$$/fd/$n/ 2>/dev/null && echo FD$n; done; "
        "ls /proc/$$/fd; cat /proc/self/mountinfo"
    )
    lines = run(busybox_engine, script)
    assert not [line for line in lines if line.startswith(("ROOT", "CWD", "FD", "EXE", "ENV"))]
    assert lines[lines.index("0"):lines.index("0") + 3] == ["0", "1", "2"]
    assert not [line for line in lines if marker in line and "overlay" not in line]


def test_pid1_is_the_shim_and_not_dumpable(busybox_engine: Engine) -> None:
    # exec makes a process dumpable again: the shim turns it off before the app may run
    script = (
        "cat /proc/1/exe > /dev/null && echo EXE; cat /proc/1/environ && echo ENV; "
        "ls /proc/1/root/ && echo ROOT; readlink /proc/1/fd/0 && echo FD; "
        "cat /proc/1/maps && echo MAPS; tr '\\0' ' ' < /proc/1/cmdline; echo"
    )
    lines = run(busybox_engine, script)
    assert not {"EXE", "ENV", "ROOT", "FD", "MAPS"} & set(lines), lines
    assert any(line.startswith("paas-shim ") for line in lines), lines
    assert lines[-1] == "exit 0"


@pytest.mark.parametrize("fd", [3, 4, 5, 6, 7, 8])
def test_workdir_through_proc_self_fd_is_refused(
    busybox_engine: Engine, tmp_path: Path, fd: int
) -> None:
    image = commit_layer(busybox_engine, tmp_path, {}, working_dir=f"/proc/self/fd/{fd}")
    with pytest.raises(ContainerError, match="outside the container|No such file"):
        run(busybox_engine, "pwd; ls ..", image)


@pytest.mark.parametrize("workdir", ["/proc/1/fd", "/proc/1/root", "/proc/self/cwd", "/proc/sys"])
def test_workdir_inside_proc_is_refused(
    busybox_engine: Engine, tmp_path: Path, workdir: str
) -> None:
    image = commit_layer(busybox_engine, tmp_path, {}, working_dir=workdir)
    with pytest.raises(ContainerError, match="inside /proc|outside the container"):
        run(busybox_engine, "pwd", image)


@pytest.mark.parametrize("fd", [3, 4, 5, 6])
def test_workdir_symlink_to_proc_fd_is_refused(
    busybox_engine: Engine, tmp_path: Path, fd: int
) -> None:
    image = commit_layer(busybox_engine, tmp_path, {"w": f"/proc/self/fd/{fd}"}, working_dir="/w")
    with pytest.raises(ContainerError, match="outside the container|No such file"):
        run(busybox_engine, "pwd", image)


def test_workdir_symlink_resolves_inside_the_root(busybox_engine: Engine, tmp_path: Path) -> None:
    links = {"up": "../../../../../..", "abs": "/"}
    image = commit_layer(busybox_engine, tmp_path, links, working_dir="/up/bin")
    assert run(busybox_engine, "pwd; ls /bin/busybox; cd /abs && ls -d /bin", image) == [
        "/bin", "/bin/busybox", "/bin", "exit 0",
    ]


def test_image_with_symlinked_dev_proc_sys(busybox_engine: Engine, tmp_path: Path) -> None:
    links = {"dev": "/", "proc": "/etc", "sys": "../../../../../tmp"}
    image = commit_layer(busybox_engine, tmp_path, links)
    script = (
        "ls /dev | tr '\\n' ' '; echo; grep -c . /proc/self/status; ls /sys/kernel >/dev/null && "
        "echo SYS; test -c /dev/null && echo NULL; grep -E ' /(dev|proc|sys) ' /proc/mounts | "
        "cut -d' ' -f1,3"
    )
    lines = run(busybox_engine, script, image)
    assert lines[0].split() == [
        "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
        "stdout", "tty", "urandom", "zero",
    ]
    assert int(lines[1]) > 10 and lines[2:4] == ["SYS", "NULL"]
    assert lines[4:] == ["proc proc", "tmpfs tmpfs", "sysfs sysfs", "exit 0"]


@pytest.mark.parametrize(
    "target", ["/proc/self/root/etc/group", *(f"/proc/1/fd/{fd}/spec.json" for fd in range(3, 9))]
)
def test_passwd_symlinked_into_proc_is_not_read(
    busybox_engine: Engine, tmp_path: Path, target: str
) -> None:
    # The init looks USER up in the image's /etc/passwd while it still holds a host directory
    # open: a link through /proc's magic links must not lead it there.
    image = commit_layer(busybox_engine, tmp_path, {"etc/passwd": target})
    with pytest.raises(ContainerError, match="leads outside the container|unable to find user"):
        run(busybox_engine, "id", image, user="nobody")
    if target.startswith("/proc/self/root"):  # a link that exists: refused, not just missing
        with pytest.raises(ContainerError, match="leads outside the container"):
            run(busybox_engine, "id", image, user="nobody")
