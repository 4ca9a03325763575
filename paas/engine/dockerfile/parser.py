"""Dockerfile text into a checked tree: build stages of instructions, with flags and exec forms.

Docker's Dockerfile reference is the spec. The lexer makes logical lines; this module turns
each into an Instruction, checks its flags and arguments, and groups them into stages.
Nothing is substituted here: that is the builder's job, with paas.engine.dockerfile.substitute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from paas.engine.dockerfile import checks
from paas.engine.dockerfile.lexer import (
    DEFAULT_ESCAPE,
    parse_exec_form,
    read_source,
    split_command,
    split_fields,
)
from paas.errors import DockerfileError

__all__ = [
    "MAX_DOCKERFILE_BYTES",
    "Dockerfile",
    "Instruction",
    "Stage",
    "parse",
    "parse_exec_form",
    "parse_instruction",
]

MAX_DOCKERFILE_BYTES = 1024 * 1024
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")


@dataclass(frozen=True, slots=True)
class Instruction:
    line: int
    keyword: str
    args: str
    flags: tuple[tuple[str, str], ...] = ()
    exec_form: tuple[str, ...] | None = None
    original: str = ""

    def where(self, filename: str) -> str:
        return f"{filename} line {self.line}: {self.keyword}"

    def flag(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.flags:
            if key == name:
                return value
        return default


@dataclass(frozen=True, slots=True)
class Stage:
    index: int
    name: str | None
    base: str
    platform: str | None
    instruction: Instruction
    steps: tuple[Instruction, ...]


@dataclass(frozen=True, slots=True)
class Dockerfile:
    filename: str
    escape: str
    global_args: tuple[Instruction, ...]
    stages: tuple[Stage, ...]

    def stage(self, name_or_index: str) -> Stage:
        """A stage by its `AS` name (any case) or its index ("0" is the first)."""
        wanted = name_or_index.lower()
        for stage in self.stages:
            if stage.name == wanted:
                return stage
        if name_or_index.isdigit() and int(name_or_index) < len(self.stages):
            return self.stages[int(name_or_index)]
        raise DockerfileError(f"{self.filename}: no build stage named {name_or_index!r}")


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    # A character is at least one byte: the cheap length test spares encoding a huge text.
    if len(text) > MAX_DOCKERFILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_DOCKERFILE_BYTES:
        raise DockerfileError(f"{filename} is larger than 1 MiB")
    source = read_source(text, filename)
    instructions = [
        parse_instruction(logical.text, logical.line, filename, source.escape) for logical in source.lines
    ]
    if not instructions:
        raise DockerfileError(f"{filename} has no instructions")
    global_args, stages = _stages(instructions, filename)
    return Dockerfile(filename, source.escape, global_args, stages)


def parse_instruction(
    body: str, line: int, filename: str = "Dockerfile", escape: str = DEFAULT_ESCAPE
) -> Instruction:
    """One logical line (a Dockerfile line, an ONBUILD trigger, a `commit --change`)."""
    word, flag_words, args = split_command(body)
    if not word:
        raise DockerfileError(f"{filename} line {line}: empty instruction")
    keyword = word.upper()
    where = f"{filename} line {line}: {keyword}"
    if keyword not in checks.KEYWORDS:
        raise DockerfileError(f"{where}: unknown instruction")
    flags = checks.parse_flags(keyword, flag_words, where)
    exec_form = _exec_form(keyword, args, where)
    instruction = Instruction(line, keyword, args, flags, exec_form, body.strip())
    checks.check_arguments(instruction, where, escape)
    if keyword == "ONBUILD":
        _check_trigger(instruction, filename, escape)
    return instruction


def _exec_form(keyword: str, args: str, where: str) -> tuple[str, ...] | None:
    if keyword not in checks.EXEC_FORMS:
        return None
    try:
        return parse_exec_form(args)
    except DockerfileError as error:
        raise DockerfileError(f"{where}: {error}") from None


def _check_trigger(instruction: Instruction, filename: str, escape: str) -> None:
    trigger = split_command(instruction.args)[0].upper()
    if trigger == "ONBUILD":
        raise DockerfileError(
            f"{instruction.where(filename)}: chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        )
    if trigger in {"FROM", "MAINTAINER"}:
        raise DockerfileError(f"{instruction.where(filename)}: {trigger} isn't allowed as an ONBUILD trigger")
    parse_instruction(instruction.args, instruction.line, filename, escape)


def _stages(
    instructions: list[Instruction], filename: str
) -> tuple[tuple[Instruction, ...], tuple[Stage, ...]]:
    global_args: list[Instruction] = []
    heads: list[tuple[Instruction, list[Instruction]]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            heads.append((instruction, []))
        elif heads:
            heads[-1][1].append(instruction)
        elif instruction.keyword == "ARG":
            global_args.append(instruction)
        else:
            raise DockerfileError(
                f"{instruction.where(filename)}: no build stage in current context: "
                "the first instruction other than ARG must be FROM"
            )
    if not heads:
        raise DockerfileError(f"{filename} has no FROM instruction: there is no stage to build")
    stages = tuple(_stage(index, head, steps, filename) for index, (head, steps) in enumerate(heads))
    _check_unique_names(stages, filename)
    return tuple(global_args), stages


def _stage(index: int, head: Instruction, steps: list[Instruction], filename: str) -> Stage:
    words = split_fields(head.args)
    name: str | None = None
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not _STAGE_NAME.match(name):
            raise DockerfileError(
                f"{head.where(filename)}: invalid name for build stage: {words[2]!r}, "
                "name can't start with a number or contain symbols"
            )
    elif len(words) != 1:
        raise DockerfileError(f"{head.where(filename)}: requires either one or three arguments")
    return Stage(index, name, words[0], head.flag("platform"), head, tuple(steps))


def _check_unique_names(stages: tuple[Stage, ...], filename: str) -> None:
    seen: set[str] = set()
    for stage in stages:
        if stage.name is None:
            continue
        if stage.name in seen:
            raise DockerfileError(f"{stage.instruction.where(filename)}: duplicate stage name {stage.name!r}")
        seen.add(stage.name)
