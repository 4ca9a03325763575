"""The few rtnetlink requests of a container start, built by hand: veth pair, link and
neighbour deletion.

Every bridge start and stop makes them. pyroute2 costs ~0.25 s to import (a whole CLI
`run` pays it) and ~1.5 ms of Python per request; these are a struct.pack and one
send/recv on a socket opened per call (~20 us, so nothing is shared between threads or
across a fork). The rarer work (the bridge, its address) stays with pyroute2 in network.py.
Message layouts: rtnetlink(7), <linux/if_link.h>, <linux/veth.h>, <linux/neighbour.h>.
Failures raise OSError with the kernel's errno.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_DELNEIGH = 16, 17, 29
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_PID = 3, 10, 18, 19
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
NDA_DST = 1
IFF_UP = 0x1
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_NDMSG = struct.Struct("=BxxxiHBB")  # ndmsg: family, ifindex, state, flags, type
_RECV_SIZE = 65536


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _request(kind: int, flags: int, body: bytes) -> None:
    """Send one request and wait for its acknowledgement."""
    header = _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       NETLINK_ROUTE) as sock:
        sock.sendall(header + body)
        while True:  # only our request's answer comes on a socket that joined no group
            reply = sock.recv(_RECV_SIZE)
            offset = 0
            while offset + _HEADER.size <= len(reply):
                length, msg_type, _, _, _ = _HEADER.unpack_from(reply, offset)
                if msg_type == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", reply, offset + _HEADER.size)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return
                offset += max(length, _HEADER.size) + (-length % 4)


def add_veth(host: str, peer: str, *, master: int, peer_pid: int) -> None:
    """A veth pair in one request: `host` up on the bridge whose index is `master`, `peer`
    born in the network namespace of `peer_pid` (moving it there afterwards would make the
    kernel wait for an RCU grace period, ~20 ms). EEXIST if `host` exists."""
    peer_info = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(peer)) \
        + _attr(IFLA_NET_NS_PID, struct.pack("=I", peer_pid))
    info = _attr(IFLA_INFO_KIND, _name("veth")) \
        + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info))
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP) + _attr(IFLA_IFNAME, _name(host)) \
        + _attr(IFLA_MASTER, struct.pack("=I", master)) \
        + _attr(IFLA_LINKINFO, info)
    _request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)


def delete_link(name: str) -> bool:
    """Delete the link `name` (a veth takes its peer along); False if there was none."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(name))
    return _delete(RTM_DELLINK, body, errno.ENODEV)


def delete_neighbor(ip: str, ifindex: int) -> bool:
    """Forget the IPv4 neighbour (ARP) entry of `ip` on link `ifindex`; False if none."""
    body = _NDMSG.pack(socket.AF_INET, ifindex, 0, 0, 0) + _attr(NDA_DST, socket.inet_aton(ip))
    return _delete(RTM_DELNEIGH, body, errno.ENOENT)


def _delete(kind: int, body: bytes, absent: int) -> bool:
    """A delete request; False when the kernel says (errno `absent`) there was nothing."""
    try:
        _request(kind, 0, body)
    except OSError as exc:
        if exc.errno != absent:
            raise
        return False
    return True
