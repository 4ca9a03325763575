"""Egress for a bridge's containers: masquerading and forwarding rules in iptables.

Containers on the bridge have private addresses; traffic leaving the host through another
interface is masqueraded to the host's address, as Docker's default bridge does. The FORWARD
rules are inserted first in their chain, so a host whose FORWARD policy is DROP still passes
the bridge's traffic. Every rule carries the comment ``paas:<bridge>``, so removing them
touches nothing else; adding checks first (``-C``), so it is idempotent.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from paas.errors import NetworkError

IPTABLES = "iptables"
COMMENT_PREFIX = "paas:"
TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Rule:
    table: str
    chain: str
    spec: tuple[str, ...]


def egress_rules(bridge: str, subnet: str) -> tuple[Rule, ...]:
    tag = ("-m", "comment", "--comment", f"{COMMENT_PREFIX}{bridge}")
    return (
        Rule("nat", "POSTROUTING", ("-s", subnet, "!", "-o", bridge, *tag, "-j", "MASQUERADE")),
        Rule("filter", "FORWARD", ("-i", bridge, *tag, "-j", "ACCEPT")),
        Rule("filter", "FORWARD",
             ("-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *tag, "-j", "ACCEPT")),
    )


def ensure_egress(bridge: str, subnet: str) -> None:
    """Add the bridge's egress rules that are missing."""
    for rule in egress_rules(bridge, subnet):
        if not _present(rule):
            verb = "-A" if rule.table == "nat" else "-I"
            _iptables(rule.table, verb, rule.chain, *rule.spec)


def remove_egress(bridge: str, subnet: str) -> None:
    """Remove the bridge's egress rules, every copy of each."""
    for rule in egress_rules(bridge, subnet):
        while _present(rule):
            _iptables(rule.table, "-D", rule.chain, *rule.spec)


def _present(rule: Rule) -> bool:
    return _run([IPTABLES, "-w", "-t", rule.table, "-C", rule.chain, *rule.spec]).returncode == 0


def _iptables(table: str, verb: str, chain: str, *spec: str) -> None:
    result = _run([IPTABLES, "-w", "-t", table, verb, chain, *spec])
    if result.returncode != 0:
        raise NetworkError(
            f"iptables {verb} {chain} in table {table} failed: {result.stderr.strip() or result.returncode}"
        )


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkError(f"cannot run {argv[0]}: {exc}") from None
