"""The app's confinement, applied by its process between fork and exec, in this order.

Bounding set first (root still holds CAP_SETPCAP), then the user switch (which empties a
non-root user's capabilities), then the capability sets, then no_new_privs and the seccomp
filter last: after it, mount, unshare and the like are denied even to the code that follows.
"""

from __future__ import annotations

import os

from paas.engine.runtime import _libc, caps
from paas.engine.runtime.users import Identity


def confine(who: Identity, seccomp_program: bytes) -> None:
    caps.drop_bounding()
    os.setgroups(list(who.groups))
    os.setgid(who.gid)
    os.setuid(who.uid)
    caps.limit_sets(who.uid)
    _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
    _libc.seccomp_filter(seccomp_program)


def hide_from_ptrace() -> None:
    """Not dumpable: /proc/PID/{exe,root,cwd,fd,environ,mem} need CAP_SYS_PTRACE, which the
    app lacks, so it cannot reach the host's python binary or fds through the init."""
    _libc.prctl(_libc.PR_SET_DUMPABLE, 0)


def own_cgroup_namespace(enabled: bool) -> None:
    """Show the container its own cgroup as the root when the engine's groups are v2 (Docker's
    "private" default there); on v1 it keeps the host's view, as Docker's "host" default does.
    The engine decides (LaunchSpec.cgroupns): a hybrid host has v2 mounted next to v1."""
    if enabled:
        _libc.unshare(_libc.CLONE_NEWCGROUP)
