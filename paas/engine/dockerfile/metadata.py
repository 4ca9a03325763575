"""Config-only Dockerfile instructions: what CMD, ENV, EXPOSE, HEALTHCHECK... do to an ImageConfig.

Pure functions, no I/O: shared by the builder and `paas engine commit --change`. Docker's
Dockerfile reference is the spec, including the CMD/ENTRYPOINT combination table
(`command_line`) and the rule that ENTRYPOINT clears a CMD the build did not set itself.
Substitution happens here for the instructions Docker substitutes (ENV EXPOSE LABEL STOPSIGNAL
USER VOLUME WORKDIR); never for CMD, ENTRYPOINT or HEALTHCHECK, whose shell does it at run time.
"""

from __future__ import annotations

import posixpath
import re
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from paas.engine.dockerfile.checks import parse_duration
from paas.engine.dockerfile.lexer import DEFAULT_ESCAPE, parse_exec_form
from paas.engine.dockerfile.parser import Instruction, parse_instruction
from paas.engine.dockerfile.substitute import expand, expand_pairs, expand_words
from paas.engine.images import ImageConfig
from paas.errors import DockerfileError

__all__ = [
    "CONFIG_KEYWORDS",
    "DEFAULT_SHELL",
    "apply",
    "apply_change",
    "apply_changes",
    "command_line",
    "shell_form",
    "variables",
]

DEFAULT_SHELL = ("/bin/sh", "-c")
CONFIG_KEYWORDS = frozenset({
    "CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "MAINTAINER", "ONBUILD", "USER", "VOLUME",
    "WORKDIR", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
})  # fmt: skip
PROTOCOLS = frozenset({"tcp", "udp", "sctp"})
_PORT = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_HEALTH_DURATIONS = {
    "interval": "Interval", "timeout": "Timeout",
    "start-period": "StartPeriod", "start-interval": "StartInterval",
}  # fmt: skip
_SIGNAL_NAMES = frozenset(s.name.removeprefix("SIG") for s in signal.Signals)
_RT_SIGNAL = re.compile(r"RTM(?:IN\+[0-9]+|AX-[0-9]+|IN|AX)")


def variables(config: ImageConfig, args: Mapping[str, str] | None = None) -> dict[str, str]:
    """The substitution environment: ARG values in scope, overridden by the config's ENV."""
    return {**(args or {}), **config.env_dict()}


def shell_form(config: ImageConfig, command: str) -> tuple[str, ...]:
    """A shell-form RUN/CMD/ENTRYPOINT as argv: the current SHELL plus the command text."""
    return (*(config.shell or DEFAULT_SHELL), command)


def command_line(config: ImageConfig) -> tuple[str, ...]:
    """What a container of the image runs: Docker's CMD/ENTRYPOINT table.

    ENTRYPOINT (exec or shell form, already an argv here) followed by CMD. With a shell-form
    ENTRYPOINT, CMD's words land as `sh -c`'s positional parameters, which the command ignores,
    exactly as under Docker. Empty when neither is set (Docker refuses to start that).
    """
    return (*(config.entrypoint or ()), *(config.cmd or ()))


def apply_change(
    config: ImageConfig,
    line: str,
    env: Mapping[str, str] | None = None,
    escape: str = DEFAULT_ESCAPE,
) -> ImageConfig:
    """One `commit --change` line (CMD ENTRYPOINT ENV EXPOSE LABEL ONBUILD USER VOLUME ...).

    `env` holds extra variables for substitution (ARG values); the config's ENV wins over them.
    """
    return apply_changes(config, [line], env, escape)


def apply_changes(
    config: ImageConfig,
    lines: Sequence[str],
    env: Mapping[str, str] | None = None,
    escape: str = DEFAULT_ESCAPE,
) -> ImageConfig:
    """Several change lines in order; a CMD among them survives a later ENTRYPOINT."""
    cmd_set = False
    for line in lines:
        instruction = parse_instruction(line, 1, "change", escape)
        if instruction.keyword not in CONFIG_KEYWORDS:
            raise DockerfileError(
                f"change {line!r}: {instruction.keyword} cannot be applied to an image config"
            )
        config = apply(config, instruction, variables(config, env), escape=escape,
                       cmd_set=cmd_set, filename="change")
        cmd_set = cmd_set or instruction.keyword == "CMD"
    return config


def apply(
    config: ImageConfig,
    instruction: Instruction,
    env: Mapping[str, str],
    *,
    escape: str = DEFAULT_ESCAPE,
    cmd_set: bool = True,
    filename: str = "Dockerfile",
) -> ImageConfig:
    """The config after one config-only instruction; `env` is the substitution environment.

    `cmd_set` says whether this build (stage) set CMD itself: if not, ENTRYPOINT clears the
    inherited CMD, as Docker does.
    """
    handler = _HANDLERS.get(instruction.keyword)
    if handler is None:
        raise DockerfileError(f"{instruction.where(filename)}: not a config instruction")
    try:
        changed = handler(config, instruction, env, escape)
    except DockerfileError as error:
        where = instruction.where(filename)
        message = str(error)
        raise DockerfileError(message if message.startswith(where) else f"{where}: {message}") from None
    if instruction.keyword == "ENTRYPOINT" and not cmd_set:
        changed = changed.replace(cmd=None)
    return changed


def _command(config: ImageConfig, instruction: Instruction) -> tuple[str, ...]:
    if instruction.exec_form is not None:
        return instruction.exec_form
    return shell_form(config, instruction.args)


def _cmd(config: ImageConfig, ins: Instruction, env: Mapping[str, str], esc: str) -> ImageConfig:
    return config.replace(cmd=_command(config, ins))


def _entrypoint(
    config: ImageConfig, ins: Instruction, env: Mapping[str, str], esc: str
) -> ImageConfig:
    return config.replace(entrypoint=_command(config, ins))


def _env(config: ImageConfig, ins: Instruction, env: Mapping[str, str], esc: str) -> ImageConfig:
    # Every pair is expanded against the environment from before the instruction, like Docker.
    for key, value in expand_pairs(ins.args, env, esc):
        config = config.with_env(key, value)
    return config


def _label(config: ImageConfig, ins: Instruction, env: Mapping[str, str], esc: str) -> ImageConfig:
    labels = dict(config.labels)
    labels.update(expand_pairs(ins.args, env, esc))
    return config.replace(labels=labels)


def _maintainer(
    config: ImageConfig, ins: Instruction, env: Mapping[str, str], esc: str
) -> ImageConfig:
    return config.replace(labels={**config.labels, "maintainer": ins.args})


def _expose(config: ImageConfig, ins: Instruction, env: Mapping[str, str], esc: str) -> ImageConfig:
    ports = set(config.exposed_ports)
    for word in expand_words(ins.args, env, esc):
        ports.update(parse_ports(word))
    # Sorted as strings, like ImageConfig.from_oci reads them back: a config round-trips.
    return config.replace(exposed_ports=tuple(sorted(ports)))


def parse_ports(word: str) -> list[str]:
    """`80`, `80/udp` or a range `8000-8002/tcp` into `port/proto` keys."""
    number, _, proto = word.partition("/")
    proto = (proto or "tcp").lower()
    match = _PORT.fullmatch(number)
    if proto not in PROTOCOLS or match is None:
        raise DockerfileError(f"invalid port {word!r}: expected PORT[-PORT][/tcp|udp|sctp]")
    first = int(match.group(1))
    last = int(match.group(2) or first)
    if not 0 < first <= last <= 65535:
        raise DockerfileError(f"invalid port {word!r}: ports go from 1 to 65535")
    return [f"{port}/{proto}" for port in range(first, last + 1)]


def _user(config: ImageConfig, ins: Instruction, env: Mapping[str, str], esc: str) -> ImageConfig:
    user = expand(ins.args.strip(), env, esc)
    if not user:
        raise DockerfileError("requires a user name or id")
    return config.replace(user=user)


def _volume(config: ImageConfig, ins: Instruction, env: Mapping[str, str], esc: str) -> ImageConfig:
    if ins.exec_form is not None:
        items = [expand(item, env, esc) for item in ins.exec_form]
    else:
        items = expand_words(ins.args, env, esc)
    if not items or any(not item.strip() for item in items):
        raise DockerfileError("VOLUME specified can not be an empty string")
    return config.replace(volumes=tuple(sorted({*config.volumes, *items})))


def workdir_path(current: str, path: str) -> str:
    """WORKDIR semantics: a relative path is relative to the previous WORKDIR; cleaned."""
    return "/" + posixpath.normpath(posixpath.join(current or "/", path)).lstrip("/")


def _workdir(config: ImageConfig, ins: Instruction, env: Mapping[str, str], esc: str) -> ImageConfig:
    path = expand(ins.args.strip(), env, esc)
    if not path:
        raise DockerfileError("requires a path")
    return config.replace(working_dir=workdir_path(config.working_dir, path))


def _stopsignal(
    config: ImageConfig, ins: Instruction, env: Mapping[str, str], esc: str
) -> ImageConfig:
    value = expand(ins.args.strip(), env, esc)
    check_signal(value)
    return config.replace(stop_signal=value)


def check_signal(value: str) -> None:
    """DockerfileError unless `value` names a signal: `SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`."""
    if value.isdigit():
        if 0 < int(value) <= 64:
            return
    else:
        name = value.upper().removeprefix("SIG")
        if name in _SIGNAL_NAMES or _RT_SIGNAL.fullmatch(name):
            return
    raise DockerfileError(f"invalid signal: {value!r}")


def _healthcheck(
    config: ImageConfig, ins: Instruction, env: Mapping[str, str], esc: str
) -> ImageConfig:
    return config.replace(healthcheck=healthcheck(ins))


def healthcheck(ins: Instruction) -> dict[str, Any]:
    """HEALTHCHECK into Docker's Healthcheck object: Test, durations in ns, Retries."""
    kind, _, rest = ins.args.strip().partition(" ")
    kind, rest = kind.strip().upper(), rest.strip()
    if kind == "NONE":
        if rest or ins.flags:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments or flags")
        return {"Test": ["NONE"]}
    if kind != "CMD" or not rest:
        raise DockerfileError(f"unknown type {kind!r} in HEALTHCHECK (try CMD or NONE)")
    form = parse_exec_form(rest)
    check: dict[str, Any] = {"Test": ["CMD", *form] if form is not None else ["CMD-SHELL", rest]}
    for flag, key in _HEALTH_DURATIONS.items():
        value = ins.flag(flag)
        nanoseconds = _duration(flag, value) if value else 0
        if nanoseconds:
            check[key] = nanoseconds
    retries = ins.flag("retries")
    if retries:
        if not retries.isdigit():
            raise DockerfileError(f"--retries must be a non-negative integer, not {retries!r}")
        if int(retries):
            check["Retries"] = int(retries)
    return check


def _duration(flag: str, value: str) -> int:
    try:
        nanoseconds = parse_duration(value)
    except ValueError:
        raise DockerfileError(f"--{flag} is not a duration (like 30s): {value!r}") from None
    if nanoseconds < 0 or 0 < nanoseconds < 10**6:
        raise DockerfileError(f"--{flag} cannot be less than 1ms: {value!r}")
    return nanoseconds


def _shell(config: ImageConfig, ins: Instruction, env: Mapping[str, str], esc: str) -> ImageConfig:
    if not ins.exec_form:
        raise DockerfileError("requires the arguments to be in JSON form")
    return config.replace(shell=ins.exec_form)


def _onbuild(config: ImageConfig, ins: Instruction, env: Mapping[str, str], esc: str) -> ImageConfig:
    # Stored as written: the trigger is substituted when a later build runs it.
    return config.replace(on_build=(*config.on_build, ins.args.strip()))


_Handler = Callable[[ImageConfig, Instruction, Mapping[str, str], str], ImageConfig]
_HANDLERS: dict[str, _Handler] = {
    "CMD": _cmd,
    "ENTRYPOINT": _entrypoint,
    "ENV": _env,
    "LABEL": _label,
    "MAINTAINER": _maintainer,
    "EXPOSE": _expose,
    "USER": _user,
    "VOLUME": _volume,
    "WORKDIR": _workdir,
    "STOPSIGNAL": _stopsignal,
    "HEALTHCHECK": _healthcheck,
    "SHELL": _shell,
    "ONBUILD": _onbuild,
}
