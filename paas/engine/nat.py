"""A bridge's rules in iptables: egress masquerading, and the DNAT of published ports.

Containers on the bridge have private addresses; traffic leaving the host through another
interface is masqueraded to the host's address, as Docker's default bridge does. The FORWARD
rules are inserted first in their chain, so a host whose FORWARD policy is DROP still passes
the bridge's traffic. The bridge's own rules carry the comment ``paas:<bridge>``, a
container's published ports ``paas:<bridge>:<container id>``: removing either touches
nothing else. Egress rules are checked first (``-C``), so adding them is idempotent.

What every published port needs besides its DNAT (forwarding, masquerading of loopback and
hairpin connections) is a bridge rule matching ``--ctstate DNAT``, so a container's own
rules are two DNATs per port, all in table nat. They go in with one
``iptables-restore --noflush`` (~5 ms, where each iptables call costs as much) and come out
the same way, from the tagged lines of ``iptables-save``: a commit that deletes rules waits
~15 ms in the kernel for each table it touches, hence one table.

Publishing a UDP port also drops the conntrack entries of flows to it (pyroute2, ~15 ms),
which would otherwise keep the NAT of their first datagram.
"""

from __future__ import annotations

import errno
import shlex
import socket
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from paas.engine.containers import ANY_HOST_IP, PortMapping
from paas.errors import NetworkError

IPTABLES = "iptables"
IPTABLES_RESTORE = "iptables-restore"
IPTABLES_SAVE = "iptables-save"
COMMENT_PREFIX = "paas:"
LOOPBACK_NET = "127.0.0.0/8"
TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Rule:
    table: str
    chain: str
    spec: tuple[str, ...]

    @property
    def verb(self) -> str:
        """nat rules go last; filter rules first, ahead of a host's own DROP rules."""
        return "-A" if self.table == "nat" else "-I"


def bridge_tag(bridge: str) -> str:
    return f"{COMMENT_PREFIX}{bridge}"


def container_tag(bridge: str, container_id: str) -> str:
    return f"{COMMENT_PREFIX}{bridge}:{container_id}"


def _comment(tag: str) -> tuple[str, ...]:
    return ("-m", "comment", "--comment", tag)


def egress_rules(bridge: str, subnet: str) -> tuple[Rule, ...]:
    """The bridge's rules: egress, and what every published port of it shares."""
    tag = _comment(bridge_tag(bridge))
    dnat = ("-o", bridge, "-m", "conntrack", "--ctstate", "DNAT")
    return (
        Rule("nat", "POSTROUTING", ("-s", subnet, "!", "-o", bridge, *tag, "-j", "MASQUERADE")),
        # A published port reached from the host's loopback, whose source the container cannot
        # answer, or from a container through the host's address (hairpin): replies must come
        # back through the host.
        Rule("nat", "POSTROUTING", ("-s", LOOPBACK_NET, *dnat, *tag, "-j", "MASQUERADE")),
        Rule("nat", "POSTROUTING", ("-s", subnet, *dnat, *tag, "-j", "MASQUERADE")),
        Rule("filter", "FORWARD", ("-i", bridge, *tag, "-j", "ACCEPT")),
        Rule("filter", "FORWARD",
             ("-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *tag, "-j", "ACCEPT")),
        Rule("filter", "FORWARD", (*dnat, *tag, "-j", "ACCEPT")),  # to published ports
        # Published ports set route_localnet on the bridge, which would let a container open
        # connections to the host's 127.0.0.1 services through it (CVE-2020-8558); replies to
        # the host's own loopback connections are ESTABLISHED and pass.
        Rule("filter", "INPUT", ("-i", bridge, "-d", LOOPBACK_NET, "-m", "conntrack", "!",
                                 "--ctstate", "RELATED,ESTABLISHED", *tag, "-j", "DROP")),
    )


def publish_rules(container_tag: str, ip: str, ports: Sequence[PortMapping]) -> tuple[Rule, ...]:
    """DNAT from the host's addresses to the container, for traffic arriving from elsewhere
    (PREROUTING) and from the host itself (OUTPUT). Only nat rules: a restore that deletes
    rules waits ~15 ms for the kernel per table it touches."""
    tag = _comment(container_tag)
    rules: list[Rule] = []
    for port in ports:
        to_host = ("-m", "addrtype", "--dst-type", "LOCAL") if port.host_ip == ANY_HOST_IP \
            else ("-d", port.host_ip)
        dnat = ("-p", port.proto, "-m", port.proto, *to_host, "--dport", str(port.host_port),
                *tag, "-j", "DNAT", "--to-destination", f"{ip}:{port.container_port}")
        if not port.host_ip.startswith("127."):  # loopback is for the host alone
            rules.append(Rule("nat", "PREROUTING", dnat))
        rules.append(Rule("nat", "OUTPUT", dnat))
    return tuple(rules)


def ensure_egress(bridge: str, subnet: str) -> None:
    """Add the bridge's egress rules that are missing."""
    missing = [rule for rule in egress_rules(bridge, subnet) if not _present(rule)]
    if missing:
        _restore(_lines(missing))


def publish(bridge: str, container_id: str, ip: str, ports: Sequence[PortMapping]) -> None:
    """Add the rules of a container's published ports, all in one commit."""
    _restore(_lines(publish_rules(container_tag(bridge, container_id), ip, ports)))


def forget_udp_flows(ports: Sequence[PortMapping]) -> None:
    """Drop the kernel's conntrack entries of UDP flows to these host ports, as Docker does.

    A UDP flow keeps its entry, and the NAT decided for its first datagram, as long as
    datagrams keep coming: a client that kept sending would otherwise still be sent to the
    address of the port's previous container, or to the host if nothing was published then.
    """
    udp = sorted({port.host_port for port in ports if port.proto == "udp"})
    if not udp:
        return
    from pyroute2 import Conntrack, NetlinkError  # ~0.25 s to import: UDP publishers only
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    try:
        with Conntrack() as conntrack:
            for port in udp:
                flows = NFCTAttrTuple(proto=socket.IPPROTO_UDP, dport=port)
                for entry in list(conntrack.dump_entries(tuple_orig=flows)):
                    try:
                        conntrack.delete(entry)
                    except NetlinkError as exc:
                        if exc.code != errno.ENOENT:  # ENOENT: the flow expired meanwhile
                            raise
    except NetlinkError as exc:
        raise NetworkError(f"cannot forget the UDP flows to ports {udp}: {exc}") from None


def remove_tagged(tag: str) -> int:
    """Remove every rule whose comment is `tag` or starts with `tag:`; how many went."""
    dump = _checked([IPTABLES_SAVE], "iptables-save").stdout
    table = ""
    deletions: list[tuple[str, str]] = []
    for line in dump.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A ") and tag in line and _tagged(_comment_of(line), tag):
            deletions.append((table, f"-D {line[3:]}"))
    if deletions:
        _restore(deletions)
    return len(deletions)


def remove_bridge(bridge: str) -> None:
    """Remove every rule of the bridge: its egress rules and all containers' ports."""
    remove_tagged(bridge_tag(bridge))


def _tagged(comment: str | None, tag: str) -> bool:
    return comment is not None and (comment == tag or comment.startswith(f"{tag}:"))


def _comment_of(line: str) -> str | None:
    try:
        words = shlex.split(line)
        return words[words.index("--comment") + 1]
    except (ValueError, IndexError):  # no comment, or quoting shlex cannot read: not ours
        return None


def _lines(rules: Iterable[Rule]) -> list[tuple[str, str]]:
    return [(rule.table, f"{rule.verb} {rule.chain} {' '.join(rule.spec)}") for rule in rules]


def _restore(lines: Iterable[tuple[str, str]]) -> None:
    """One iptables-restore of (table, rule line) pairs, grouped by table, keeping the rest."""
    tables: dict[str, list[str]] = {}
    for table, line in lines:
        tables.setdefault(table, []).append(line)
    text = "".join(f"*{table}\n" + "".join(f"{r}\n" for r in rules) + "COMMIT\n"
                   for table, rules in tables.items())
    _checked([IPTABLES_RESTORE, "-w", "--noflush"], "iptables-restore", text)


def _present(rule: Rule) -> bool:
    return _run([IPTABLES, "-w", "-t", rule.table, "-C", rule.chain, *rule.spec]).returncode == 0


def _checked(argv: list[str], what: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = _run(argv, stdin)
    if result.returncode != 0:
        raise NetworkError(f"{what} failed: {result.stderr.strip() or result.returncode}")
    return result


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkError(f"cannot run {argv[0]}: {exc}") from None
