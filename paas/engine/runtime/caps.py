"""Capabilities: the app keeps Docker's default 14 and can never regain the others.

The bounding set is cut first (that needs CAP_SETPCAP, which root still has), so no exec of a
setuid or file-capable binary can bring a dropped capability back. Inheritable and ambient
sets are emptied as Docker does since the 2022 fix for CVE-2022-24769; a non-root user ends
with empty permitted and effective sets because setuid() away from root clears them.
"""

from __future__ import annotations

import errno
import functools

from paas.engine.runtime import _libc

DEFAULT_CAPS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18,
    "CAP_MKNOD": 27,
    "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
}
DEFAULT_MASK = sum(1 << bit for bit in DEFAULT_CAPS.values())  # 0xa80425fb, as Docker shows
_MAX_CAP = 64  # capability numbers fit a 64-bit mask; the kernel knows fewer
LAST_CAP_FILE = "/proc/sys/kernel/cap_last_cap"


@functools.cache  # a constant of the kernel: the engine reads it before it forks (launch.prepare)
def last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open(LAST_CAP_FILE, "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return _MAX_CAP - 1  # then drop_bounding stops at the first EINVAL


def drop_bounding(keep: int = DEFAULT_MASK) -> None:
    """Drop every capability not in `keep` from the bounding set; clear the ambient set."""
    for cap in range(last_cap() + 1):
        if keep >> cap & 1:
            continue
        try:
            _libc.prctl(_libc.PR_CAPBSET_DROP, cap)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: past the kernel's last capability
                raise
            break
    _libc.prctl(_libc.PR_CAP_AMBIENT, _libc.PR_CAP_AMBIENT_CLEAR_ALL)


def limit_sets(uid: int, keep: int = DEFAULT_MASK) -> None:
    """After setuid: root keeps `keep` as permitted and effective; anyone else keeps none."""
    mask = keep if uid == 0 else 0
    _libc.capset(mask, mask, 0)
