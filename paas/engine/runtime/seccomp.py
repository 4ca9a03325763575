"""The default seccomp filter: what Docker's default profile denies, as a classic BPF program.

Docker's profile is an allow-list; the calls it leaves out (or allows only with a capability
the default set lacks) are the ones that reach past the container: mounts, namespaces,
keyrings, kernel modules, kexec, bpf, tracing, reboot, swap, clock setting. This filter
denies exactly those with EPERM and allows the rest, which keeps it short (one compare per
call) and leaves unknown new calls to the capability checks, as the kernel does for root.

The program is built by hand (no libseccomp at run time): it checks the audit architecture
first, so a 32-bit or x32 call cannot slip past with other numbers.
"""

from __future__ import annotations

import errno
import functools
import os
import struct

from paas.engine.runtime import _libc
from paas.errors import ContainerError

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_X32_SYSCALL_BIT = 0x40000000

# name: (x86_64 number, aarch64 number or None where the call does not exist there)
DENIED: dict[str, tuple[int, int | None]] = {
    "acct": (163, 89),
    "add_key": (248, 217),
    "bpf": (321, 280),
    "clock_adjtime": (305, 266),
    "clock_settime": (227, 112),
    "create_module": (174, None),
    "delete_module": (176, 106),
    "fanotify_init": (300, 262),
    "finit_module": (313, 273),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fsopen": (430, 430),
    "fspick": (433, 433),
    "get_kernel_syms": (177, None),
    "get_mempolicy": (239, 236),
    "init_module": (175, 105),
    "ioperm": (173, None),
    "iopl": (172, None),
    "kcmp": (312, 272),
    "kexec_file_load": (320, 294),
    "kexec_load": (246, 104),
    "keyctl": (250, 219),
    "lookup_dcookie": (212, 18),
    "mbind": (237, 235),
    "mount": (165, 40),
    "mount_setattr": (442, 442),
    "move_mount": (429, 429),
    "move_pages": (279, 239),
    "name_to_handle_at": (303, 264),
    "nfsservctl": (180, 42),
    "open_by_handle_at": (304, 265),
    "open_tree": (428, 428),
    "perf_event_open": (298, 241),
    "pidfd_getfd": (438, 438),
    "pivot_root": (155, 41),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "ptrace": (101, 117),
    "query_module": (178, None),
    "quotactl": (179, 60),
    "quotactl_fd": (443, 443),
    "reboot": (169, 142),
    "request_key": (249, 218),
    "set_mempolicy": (238, 237),
    "setns": (308, 268),
    "settimeofday": (164, 170),
    "swapoff": (168, 225),
    "swapon": (167, 224),
    "syslog": (103, 116),
    "sysfs": (139, None),
    "_sysctl": (156, None),
    "umount2": (166, 39),
    "unshare": (272, 97),
    "uselib": (134, None),
    "userfaultfd": (323, 282),
    "ustat": (136, None),
    "vhangup": (153, 58),
}
# clone is allowed unless it asks for a namespace; clone3 passes its flags in memory that a
# filter cannot read, so it gets ENOSYS and libc falls back to clone (Docker does the same).
CLONE = (56, 220)
CLONE3 = (435, 435)
CLONE_NAMESPACE_FLAGS = 0x7E020000  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
# personality: only the values Docker allows (Linux, and the 32-bit and query variants).
PERSONALITY = (135, 92)
PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

_LD_W_ABS = 0x20
_JEQ = 0x15
_JGE = 0x35
_JSET = 0x45
_RET = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARG0_LOW = 16  # args[0] is a u64; both supported architectures are little-endian


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _deny(errno_value: int = errno.EPERM) -> bytes:
    return _op(_RET, _RET_ERRNO | errno_value)


def _arg_block(nr: int, body: list[bytes]) -> list[bytes]:
    """Run `body` (which looks at args[0]) for syscall `nr`; fall through to what follows."""
    return [
        _op(_LD_W_ABS, _OFFSET_NR), _op(_JEQ, nr, 0, len(body) + 1),
        _op(_LD_W_ABS, _OFFSET_ARG0_LOW), *body,
    ]


@functools.cache  # pure: built once per engine process, which the launcher and init are forks of
def build(machine: str) -> bytes:
    """The filter for `machine` (os.uname().machine); ContainerError if we have no table."""
    if machine not in AUDIT_ARCH:
        raise ContainerError(f"no seccomp filter for architecture {machine}: refusing to start")
    index = 0 if machine == "x86_64" else 1
    prog = [
        _op(_LD_W_ABS, _OFFSET_ARCH), _op(_JEQ, AUDIT_ARCH[machine], 1, 0), _deny(),
        _op(_LD_W_ABS, _OFFSET_NR),
    ]
    if machine == "x86_64":
        prog += [_op(_JGE, _X32_SYSCALL_BIT, 0, 1), _deny()]
    for numbers in DENIED.values():
        nr = numbers[index]
        if nr is not None:
            prog += [_op(_JEQ, nr, 0, 1), _deny()]
    prog += [_op(_JEQ, CLONE3[index], 0, 1), _deny(errno.ENOSYS)]
    prog += _arg_block(CLONE[index], [_op(_JSET, CLONE_NAMESPACE_FLAGS, 0, 1), _deny()])
    allowed = [_op(_JEQ, value, len(PERSONALITY_ALLOWED) - i, 0)
               for i, value in enumerate(PERSONALITY_ALLOWED)]
    prog += _arg_block(PERSONALITY[index], [*allowed, _deny()])
    prog.append(_op(_RET, _RET_ALLOW))
    return b"".join(prog)


def install() -> None:
    """Filter every later system call of this thread and its children (needs no_new_privs)."""
    _libc.seccomp_filter(build(os.uname().machine))
