"""Dockerfile text into instructions: comments, line continuations, exec (JSON) and shell forms."""

from __future__ import annotations

import json
from dataclasses import dataclass

from paas.errors import DockerfileError

MAX_DOCKERFILE_BYTES = 1024 * 1024
SUPPORTED = frozenset(
    {"FROM", "RUN", "COPY", "ENV", "WORKDIR", "CMD", "ENTRYPOINT", "EXPOSE", "USER", "LABEL"}
)
# Docker's instructions that this engine does not run yet: named so the error says so.
NOT_YET = frozenset(
    {"ADD", "ARG", "HEALTHCHECK", "SHELL", "VOLUME", "ONBUILD", "STOPSIGNAL", "MAINTAINER"}
)
JSON_FORMS = frozenset({"RUN", "CMD", "ENTRYPOINT", "COPY"})


@dataclass(frozen=True, slots=True)
class Instruction:
    line: int
    keyword: str
    args: str
    exec_form: tuple[str, ...] | None = None

    def where(self, filename: str) -> str:
        return f"{filename} line {self.line}: {self.keyword}"


def parse(text: str, filename: str = "Dockerfile") -> list[Instruction]:
    if len(text.encode()) > MAX_DOCKERFILE_BYTES:
        raise DockerfileError(f"{filename} is larger than 1 MiB")
    instructions = [_instruction(line, body, filename) for line, body in _logical_lines(text)]
    if not instructions:
        raise DockerfileError(f"{filename} has no instructions")
    if instructions[0].keyword != "FROM":
        first = instructions[0]
        raise DockerfileError(f"{filename} line {first.line}: the first instruction must be FROM")
    return instructions


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines; comment lines are dropped, even inside a continuation."""
    result: list[tuple[int, str]] = []
    start, parts = 0, list[str]()
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not parts):
            continue
        if not parts:
            start = number
        text = raw.strip() if not parts else raw.lstrip().rstrip("\r\n")
        if stripped.endswith("\\"):
            parts.append(text.rstrip()[:-1])
            continue
        parts.append(text.rstrip())
        result.append((start, "".join(parts).strip()))
        parts = []
    if parts:
        result.append((start, "".join(parts).strip()))
    return result


def _instruction(line: int, body: str, filename: str) -> Instruction:
    keyword, _, args = body.partition(" ")
    keyword, args = keyword.upper(), args.strip()
    if keyword in NOT_YET:
        raise DockerfileError(
            f"{filename} line {line}: {keyword} is not supported by this engine yet"
        )
    if keyword not in SUPPORTED:
        raise DockerfileError(f"{filename} line {line}: unknown instruction {keyword!r}")
    if not args:
        raise DockerfileError(f"{filename} line {line}: {keyword} needs arguments")
    exec_form = _exec_form(args, line, keyword, filename) if keyword in JSON_FORMS else None
    return Instruction(line, keyword, args, exec_form)


def _exec_form(args: str, line: int, keyword: str, filename: str) -> tuple[str, ...] | None:
    if not args.startswith("["):
        return None
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        if keyword == "COPY":
            return None
        raise DockerfileError(
            f"{filename} line {line}: {keyword} has malformed JSON: {args[:80]}"
        ) from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DockerfileError(
            f"{filename} line {line}: {keyword} JSON form must be a list of strings"
        )
    return tuple(value)
