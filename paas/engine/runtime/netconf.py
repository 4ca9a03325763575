"""Network setup from inside a container's network namespace: lo, eth0, default route.

Runs in the container's init before pivot_root. It uses the classic interface ioctls
rather than pyroute2, whose import alone costs about a quarter of a second on every
container start; the host side (bridge, veth) stays with pyroute2 in network.py.
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

SIOCSIFNAME = 0x8923
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCADDRT = 0x890B
IFF_UP = 0x1
RTF_UP = 0x1
RTF_GATEWAY = 0x2
_IFREQ_SIZE = 40


class _SockAddrIn(ctypes.Structure):
    _fields_ = [
        ("family", ctypes.c_ushort),
        ("port", ctypes.c_ushort),
        ("addr", ctypes.c_char * 4),
        ("zero", ctypes.c_char * 8),
    ]


class _RtEntry(ctypes.Structure):
    """struct rtentry from <net/route.h>."""

    _fields_ = [
        ("pad1", ctypes.c_ulong),
        ("dst", _SockAddrIn),
        ("gateway", _SockAddrIn),
        ("genmask", _SockAddrIn),
        ("flags", ctypes.c_ushort),
        ("pad2", ctypes.c_short),
        ("pad3", ctypes.c_ulong),
        ("pad4", ctypes.c_void_p),
        ("metric", ctypes.c_short),
        ("dev", ctypes.c_char_p),
        ("mtu", ctypes.c_ulong),
        ("window", ctypes.c_ulong),
        ("irtt", ctypes.c_ushort),
    ]


def _ifreq(name: str, payload: bytes = b"") -> bytes:
    return struct.pack("16s", name.encode()) + payload.ljust(_IFREQ_SIZE - 16, b"\0")


def _sockaddr(ip: str) -> bytes:
    return struct.pack("HH4s8x", socket.AF_INET, 0, socket.inet_aton(ip))


def _link_up(sock: socket.socket, name: str) -> None:
    current = fcntl.ioctl(sock, SIOCGIFFLAGS, _ifreq(name))
    (flags,) = struct.unpack_from("H", current, 16)
    fcntl.ioctl(sock, SIOCSIFFLAGS, _ifreq(name, struct.pack("H", flags | IFF_UP)))


def _default_route(sock: socket.socket, gateway: str) -> None:
    entry = _RtEntry()
    for addr in (entry.dst, entry.genmask, entry.gateway):
        addr.family = socket.AF_INET
    entry.gateway.addr = socket.inet_aton(gateway)
    entry.flags = RTF_UP | RTF_GATEWAY
    fcntl.ioctl(sock, SIOCADDRT, bytes(entry))


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _link_up(sock, "lo")


def configure_eth0(peer: str, ip: str, netmask: str, gateway: str) -> None:
    """Rename the veth peer the engine moved in to eth0, address it, route via the bridge."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _link_up(sock, "lo")
        fcntl.ioctl(sock, SIOCSIFNAME, _ifreq(peer, b"eth0".ljust(16, b"\0")))
        fcntl.ioctl(sock, SIOCSIFADDR, _ifreq("eth0", _sockaddr(ip)))
        fcntl.ioctl(sock, SIOCSIFNETMASK, _ifreq("eth0", _sockaddr(netmask)))
        _link_up(sock, "eth0")
        _default_route(sock, gateway)
