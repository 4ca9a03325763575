"""The default isolation profile, as the app sees it: capabilities, no_new_privs, seccomp,
Docker's /proc and /sys masks, the /dev tree, closed fds; and the seccomp filter itself,
call by call, in a forked child of the test (busybox has no applet for most denied calls)."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
from pathlib import Path

import pytest
from test_escape import run

from paas.engine.engine import Engine
from paas.engine.runtime import _libc, caps, safepath, seccomp
from paas.errors import ContainerError

DOCKER_DEFAULT_CAPS = "00000000a80425fb"
NO_CAPS = "0000000000000000"
DEV_ENTRIES = [
    "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout",
    "tty", "urandom", "zero",
]
STATUS = "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status"


def _status(lines: list[str]) -> dict[str, str]:
    assert lines[-1] == "exit 0", lines
    return dict(line.split(":\t") for line in lines[:-1])


def test_root_gets_dockers_default_capabilities(busybox_engine: Engine) -> None:
    assert _status(run(busybox_engine, STATUS)) == {
        "CapInh": NO_CAPS, "CapPrm": DOCKER_DEFAULT_CAPS, "CapEff": DOCKER_DEFAULT_CAPS,
        "CapBnd": DOCKER_DEFAULT_CAPS, "CapAmb": NO_CAPS, "NoNewPrivs": "1", "Seccomp": "2",
    }
    assert int(DOCKER_DEFAULT_CAPS, 16) == caps.DEFAULT_MASK and len(caps.DEFAULT_CAPS) == 14


@pytest.mark.parametrize("user", ["nobody", "65534:65534"])
def test_non_root_user_gets_no_capabilities(busybox_engine: Engine, user: str) -> None:
    lines = run(busybox_engine, f"id -u; {STATUS}", user=user)
    assert lines[0] == "65534"
    assert _status(lines[1:]) == {
        "CapInh": NO_CAPS, "CapPrm": NO_CAPS, "CapEff": NO_CAPS,
        "CapBnd": DOCKER_DEFAULT_CAPS, "CapAmb": NO_CAPS, "NoNewPrivs": "1", "Seccomp": "2",
    }


def test_masked_and_read_only_paths(busybox_engine: Engine) -> None:
    script = (
        "cat /proc/timer_list /proc/keys /proc/sched_debug /proc/interrupts 2>/dev/null | wc -c; "
        "ls -A /proc/acpi /sys/firmware | grep -v : | grep -c .; "
        "(touch /sys/x /sys/firmware/x /proc/acpi/x; echo x > /proc/sys/kernel/hostname) 2>&1 "
        "| grep -c Read-only; "
        "grep -E ' /(sys|proc/sys|proc/bus|proc/fs|proc/irq) ' /proc/mounts | cut -d' ' -f2,4"
    )
    lines = run(busybox_engine, script)
    assert lines[:3] == ["0", "0", "4"]
    mounts = dict(line.split() for line in lines[3:-1])
    assert set(mounts) == {"/sys", "/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"}
    assert all(options.startswith("ro,") for options in mounts.values()), mounts


def test_dev_holds_exactly_the_expected_nodes(busybox_engine: Engine) -> None:
    script = (
        "ls -A /dev | tr '\\n' ' '; echo; "
        "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T' /dev/$d; done; "
        "for l in ptmx fd stdin; do readlink /dev/$l; done; test -c /dev/pts/ptmx && echo PTMX; "
        "grep -E ' /dev(/shm|/mqueue|/pts)? ' /proc/mounts | cut -d' ' -f2,3,4"
    )
    lines = run(busybox_engine, script)
    assert lines[0].split() == DEV_ENTRIES
    assert lines[1:7] == [
        "/dev/null character special file 1:3", "/dev/zero character special file 1:5",
        "/dev/full character special file 1:7", "/dev/random character special file 1:8",
        "/dev/urandom character special file 1:9", "/dev/tty character special file 5:0",
    ]
    assert lines[7:11] == ["pts/ptmx", "/proc/self/fd", "/proc/self/fd/0", "PTMX"]
    mounts = {line.split()[0]: line.split()[1:] for line in lines[11:-1]}
    assert mounts["/dev"][0] == "tmpfs" and "nosuid" in mounts["/dev"][1]
    assert mounts["/dev/shm"][0] == "tmpfs" and "size=65536k" in mounts["/dev/shm"][1]
    assert mounts["/dev/mqueue"][0] == "mqueue"
    assert mounts["/dev/pts"][0] == "devpts" and "ptmxmode=666" in mounts["/dev/pts"][1]


def test_only_fds_0_to_2_reach_the_app(busybox_engine: Engine) -> None:
    assert run(busybox_engine, "ls /proc/$$/fd; true") == ["0", "1", "2", "exit 0"]


def test_cgroup_namespace_is_private_exactly_on_cgroup_v2(busybox_engine: Engine) -> None:
    inside = run(busybox_engine, "readlink /proc/self/ns/cgroup")[0]
    host = os.readlink("/proc/self/ns/cgroup")
    assert (inside != host) == busybox_engine.runtime.cgroups.unified


def _syscall_results(calls: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """errno of each raw syscall, made by a forked child under the default filter (0: allowed)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.install()
        out = []
        for name, (nr, *args) in calls.items():
            ctypes.set_errno(0)
            result = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
            out.append(f"{name}={ctypes.get_errno() if result == -1 else 0}")
        os.write(write_fd, " ".join(out).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        answer = pipe.read()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    return {k: int(v) for k, v in (item.split("=") for item in answer.split())}


def test_seccomp_filter_denies_what_docker_denies() -> None:
    index = 0 if os.uname().machine == "x86_64" else 1
    nr = {name: numbers[index] for name, numbers in seccomp.DENIED.items()}
    calls = {
        "keyctl": (nr["keyctl"], 0, -3, 0),  # KEYCTL_GET_KEYRING_ID of the session keyring
        "add_key": (nr["add_key"], 0, 0, 0, 0, 0),
        "mount": (nr["mount"], 0, 0, 0, 0, 0),
        "umount2": (nr["umount2"], 0, 0),
        "unshare": (nr["unshare"], 0x10000000),
        "setns": (nr["setns"], -1, 0),
        "ptrace": (nr["ptrace"], 0, 0, 0, 0),  # PTRACE_TRACEME
        "bpf": (nr["bpf"], 0, 0, 0),
        "kexec_load": (nr["kexec_load"], 0, 0, 0, 0),
        "init_module": (nr["init_module"], 0, 0, 0),
        "reboot": (nr["reboot"], 0, 0, 0, 0),
        "pivot_root": (nr["pivot_root"], 0, 0),
        "clone_newuser": (seccomp.CLONE[index], 0x10000000 | 17, 0, 0, 0, 0),
        "clone3": (seccomp.CLONE3[index], 0, 0),
        "personality_bad": (seccomp.PERSONALITY[index], 0x0400000),  # READ_IMPLIES_EXEC
        "personality_query": (seccomp.PERSONALITY[index], 0xFFFFFFFF),
        "getppid": (110 if index == 0 else 173,),
    }
    if index == 0:  # the x32 ABI's numbers must not be a way around the table
        calls["x32_getppid"] = (0x40000000 | 110,)
    results = _syscall_results(calls)
    assert results.pop("x32_getppid", errno.EPERM) == errno.EPERM
    denied = {name for name in calls if name in nr} | {"clone_newuser"}
    assert {name: results[name] for name in denied} == dict.fromkeys(denied, errno.EPERM)
    assert results["clone3"] == errno.ENOSYS
    assert results["personality_bad"] == errno.EPERM
    assert results["personality_query"] == results["getppid"] == 0


def test_syscall_tables_match_libseccomp() -> None:
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
    lib.seccomp_syscall_resolve_name_arch.argtypes = (ctypes.c_uint32, ctypes.c_char_p)
    special = {"clone": seccomp.CLONE, "clone3": seccomp.CLONE3,
               "personality": seccomp.PERSONALITY}
    for name, numbers in {**seccomp.DENIED, **special}.items():
        for arch, expected in zip(seccomp.AUDIT_ARCH.values(), numbers, strict=True):
            found = lib.seccomp_syscall_resolve_name_arch(arch, name.encode())
            assert (found if found >= 0 else None) == expected, (name, hex(arch))


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ContainerError, match="refusing to start"):
        seccomp.build("s390x")


def test_mount_targets_never_follow_symlinks(tmp_path: Path) -> None:
    (tmp_path / "real" / "dir").mkdir(parents=True)
    (tmp_path / "link").symlink_to("/")
    (tmp_path / "real" / "out").symlink_to("../..")
    with safepath.mount_target(str(tmp_path), "/real/dir") as target:
        assert os.stat(target).st_ino == os.stat(tmp_path / "real" / "dir").st_ino
    for path in ("/link", "/link/tmp", "/real/out", "/real/out/x", "/real/../link"):
        with pytest.raises((ContainerError, OSError)), safepath.mount_target(str(tmp_path), path):
            pass
    assert stat.S_ISLNK(os.lstat(tmp_path / "link").st_mode)
