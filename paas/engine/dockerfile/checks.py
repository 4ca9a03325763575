"""Per-instruction rules of the Dockerfile reference: which flags each takes, what arguments it needs.

Used by the parser so that a bad Dockerfile fails before any build step runs, naming the line.
Also home of `parse_duration`, Go's duration syntax that HEALTHCHECK flags use.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from paas.engine.dockerfile.lexer import parse_exec_form, split_fields, split_words
from paas.errors import DockerfileError

if TYPE_CHECKING:
    from paas.engine.dockerfile.parser import Instruction

KEYWORDS = frozenset({
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
    "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
})  # fmt: skip
EXEC_FORMS = frozenset({"RUN", "CMD", "ENTRYPOINT", "COPY", "ADD", "SHELL", "VOLUME"})

# flag name -> kind: "string" needs `=value`, "bool" may be bare, "duration"/"int" are checked.
FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": "string"},
    "COPY": {"from": "string", "chown": "string", "chmod": "string", "link": "bool"},
    "ADD": {"chown": "string", "chmod": "string", "checksum": "string", "link": "bool"},
    "HEALTHCHECK": {
        "interval": "duration",
        "timeout": "duration",
        "start-period": "duration",
        "start-interval": "duration",
        "retries": "int",
    },
}
# BuildKit-only RUN flags: named so the error says this engine lacks them, not that they are typos.
UNSUPPORTED_FLAGS = {"RUN": frozenset({"mount", "network", "security"})}
_HEREDOC = re.compile(r"^([0-9]*)<<(-?)([^<]*)$")
_BOOLEANS = {"": "true", "true": "true", "false": "false"}
_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9,
            "m": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip


def parse_flags(keyword: str, words: list[str], where: str) -> tuple[tuple[str, str], ...]:
    """`--name=value` words into (name, value) pairs, each checked against the instruction."""
    known = FLAGS.get(keyword, {})
    result: list[tuple[str, str]] = []
    for word in words:
        name, has_value, value = word.removeprefix("--").partition("=")
        if not word.startswith("--"):
            raise DockerfileError(f"{where}: flag should start with --: {word!r}")
        if name in UNSUPPORTED_FLAGS.get(keyword, ()):
            raise DockerfileError(f"{where}: {keyword} --{name} is not supported by this engine")
        if name not in known:
            raise DockerfileError(f"{where}: unknown flag: --{name}")
        if any(name == seen for seen, _ in result):
            raise DockerfileError(f"{where}: duplicate flag specified: --{name}")
        result.append((name, _flag_value(known[name], name, value, bool(has_value), where)))
    return tuple(result)


def _flag_value(kind: str, name: str, value: str, has_value: bool, where: str) -> str:
    if kind == "bool":
        if has_value and not value:
            raise DockerfileError(f"{where}: missing a value on flag: --{name}")
        if value.lower() not in _BOOLEANS:
            raise DockerfileError(f"{where}: expecting a boolean for flag --{name}, not {value!r}")
        return _BOOLEANS[value.lower()]
    if not has_value:
        raise DockerfileError(f"{where}: missing a value on flag: --{name}")
    if kind == "duration":
        _check_duration(name, value, where)
    elif kind == "int" and not re.fullmatch(r"[0-9]+", value):
        raise DockerfileError(f"{where}: --{name} must be a non-negative integer, not {value!r}")
    return value


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration (`1m30s`, `1.5h`, `500ms`, `0`) in nanoseconds."""
    body = text[1:] if text[:1] in "+-" else text
    sign = -1 if text.startswith("-") else 1
    if body == "0":
        return 0
    total, pos = 0.0, 0
    for match in _DURATION.finditer(body):
        number = match.group(1)
        if match.start() != pos or number in {"", "."}:
            break
        total += float(number) * _UNIT_NS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ValueError(f"invalid duration {text!r}")
    return sign * int(total)


def _check_duration(name: str, value: str, where: str) -> None:
    try:
        nanoseconds = parse_duration(value)
    except ValueError:
        raise DockerfileError(f"{where}: --{name} is not a duration (like 30s or 1m30s): {value!r}") from None
    if nanoseconds != 0 and nanoseconds < 10**6:
        raise DockerfileError(f"{where}: --{name} cannot be less than 1ms: {value!r}")


def check_arguments(instruction: Instruction, where: str, escape: str) -> None:
    """Raise DockerfileError when the instruction's arguments cannot mean anything."""
    if not instruction.args and instruction.exec_form is None:
        raise DockerfileError(f"{where}: requires at least one argument")
    check = _CHECKS.get(instruction.keyword)
    if check is not None:
        check(instruction, where, escape)


def _check_from(instruction: Instruction, where: str, escape: str) -> None:
    words = split_fields(instruction.args)
    if not (len(words) == 1 or (len(words) == 3 and words[1].lower() == "as")):
        raise DockerfileError(f"{where}: requires either one or three arguments (image [AS name])")


def _check_copy(instruction: Instruction, where: str, escape: str) -> None:
    form = instruction.exec_form
    words = list(form) if form is not None else split_fields(instruction.args)
    if len(words) < 2:
        raise DockerfileError(f"{where}: requires at least two arguments, a source and a destination")


def _check_heredoc(instruction: Instruction, where: str, escape: str) -> None:
    # BuildKit reads the lines after `<<EOF` as the instruction's input; we do not, and without
    # this check they would fail later as unknown instructions, far from the cause.
    if instruction.exec_form is not None:
        return
    for word in split_words(instruction.args, escape):
        match = _HEREDOC.match(word)
        if match and match.group(3):
            raise DockerfileError(
                f"{where}: heredocs ({word}) are not supported by this engine; "
                "put the script in a file and COPY it"
            )


def _check_copy_sources(instruction: Instruction, where: str, escape: str) -> None:
    _check_heredoc(instruction, where, escape)
    _check_copy(instruction, where, escape)


def _check_shell(instruction: Instruction, where: str, escape: str) -> None:
    if instruction.exec_form is None:
        raise DockerfileError(f"{where}: requires the arguments to be in JSON form")
    if not instruction.exec_form:
        raise DockerfileError(f"{where}: requires at least one argument")


def _check_volume(instruction: Instruction, where: str, escape: str) -> None:
    form = instruction.exec_form
    items = list(form) if form is not None else split_fields(instruction.args)
    if not items or any(not item.strip() for item in items):
        raise DockerfileError(f"{where}: VOLUME specified can not be an empty string")


def _check_pairs(instruction: Instruction, where: str, escape: str) -> None:
    words = split_words(instruction.args, escape)
    if not words:
        raise DockerfileError(f"{where}: requires at least one argument")
    if "=" not in words[0]:
        if len(split_fields(instruction.args)) < 2:
            raise DockerfileError(f"{where}: must have two arguments (name value)")
        return
    for word in words:
        key, has_value, _ = word.partition("=")
        if not has_value:
            raise DockerfileError(
                f"{where}: syntax error - can't find = in {word!r}. Must be of the form: name=value"
            )
        if not key:
            raise DockerfileError(f"{where}: names can not be blank")


def _check_arg(instruction: Instruction, where: str, escape: str) -> None:
    for word in split_words(instruction.args, escape):
        if word.startswith("="):
            raise DockerfileError(f"{where}: ARG names can not be blank")


def _check_healthcheck(instruction: Instruction, where: str, escape: str) -> None:
    kind, rest = (re.split(r"\s+", instruction.args, maxsplit=1) + [""])[:2]
    kind, rest = kind.upper(), rest.strip()
    if kind == "NONE":
        if rest or instruction.flags:
            raise DockerfileError(f"{where}: HEALTHCHECK NONE takes no arguments or flags")
    elif kind == "CMD":
        if not rest:
            raise DockerfileError(f"{where}: missing command after HEALTHCHECK CMD")
        try:
            form = parse_exec_form(rest)
        except DockerfileError as error:
            raise DockerfileError(f"{where}: {error}") from None
        if form == ():
            raise DockerfileError(f"{where}: missing command after HEALTHCHECK CMD")
    else:
        raise DockerfileError(f"{where}: unknown type {kind!r} in HEALTHCHECK (try CMD or NONE)")


_CHECKS = {
    "FROM": _check_from,
    "RUN": _check_heredoc,
    "COPY": _check_copy_sources,
    "ADD": _check_copy_sources,
    "SHELL": _check_shell,
    "VOLUME": _check_volume,
    "ENV": _check_pairs,
    "LABEL": _check_pairs,
    "ARG": _check_arg,
    "HEALTHCHECK": _check_healthcheck,
}
