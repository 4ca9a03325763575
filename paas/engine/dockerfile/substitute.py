"""Docker's variable substitution: $v, ${v}, ${v:-word}, ${v:+word}, and \\$ for a literal $."""

from __future__ import annotations

import re
from collections.abc import Mapping

from paas.errors import DockerfileError

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(rf"\\\$|\$\{{({_NAME})(?::([-+])([^}}]*))?\}}|\$({_NAME})|\$\{{[^}}]*\}}?")


def substitute(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "\\$":
            return "$"
        name = match.group(1) or match.group(4)
        if name is None:
            raise DockerfileError(f"bad substitution: {token!r}")
        value = env.get(name, "")
        if match.group(2) == "-":
            return value if value else substitute(match.group(3), env)
        if match.group(2) == "+":
            return substitute(match.group(3), env) if value else ""
        return value

    return _TOKEN.sub(replace, text)


def env_mapping(env: tuple[str, ...]) -> dict[str, str]:
    """`K=V` entries of an image config into a dict (later entries win)."""
    result: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        result[key] = value
    return result
