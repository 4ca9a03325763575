"""Which stages a build runs, and the ARGs declared before the first FROM.

`--target` builds that stage and only the earlier stages it needs (as its FROM base, or as the
`--from` of a COPY/ADD, directly or through other stages). A stage may name an earlier stage by
its `AS` name (any case) or by index; naming itself or a later stage is an error. Global ARGs
(before the first FROM) are usable in FROM lines and `--from` values, and inside a stage only
after an `ARG NAME` that redeclares them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from paas.engine.dockerfile.parser import Dockerfile, Instruction, Stage
from paas.engine.dockerfile.substitute import expand, expand_args
from paas.errors import BuildError, DockerfileError


@dataclass(frozen=True, slots=True)
class Plan:
    stages: tuple[Stage, ...]  # the stages to build, in file order
    target: Stage
    total_steps: int  # FROM lines plus instructions of the stages built (Docker's Step N/M)


def global_args(
    dockerfile: Dockerfile, build_args: Mapping[str, str], consumed: set[str]
) -> dict[str, str | None]:
    """The ARGs before the first FROM: name -> value (None when declared without one)."""
    values: dict[str, str | None] = {}
    for instruction in dockerfile.global_args:
        env = defined(values)
        for name, default in _args(instruction, env, dockerfile):
            consumed.add(name)
            values[name] = build_args.get(name, default)
    return values


def _args(
    instruction: Instruction, env: Mapping[str, str], dockerfile: Dockerfile
) -> list[tuple[str, str | None]]:
    try:
        return expand_args(instruction.args, env, dockerfile.escape)
    except DockerfileError as error:
        raise DockerfileError(f"{instruction.where(dockerfile.filename)}: {error}") from None


def defined(values: Mapping[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None}


def stage_ref(
    dockerfile: Dockerfile, current: int, value: str, where: str, *, strict: bool = True
) -> Stage | None:
    """The earlier stage that `value` names (AS name or index), or None when it names no stage.

    Naming the current or a later stage is an error for `--from` (`strict`); for FROM such a
    name is an image name (`FROM busybox AS busybox`).
    """
    wanted = value.lower()
    for stage in dockerfile.stages:
        if stage.name == wanted or (value.isdigit() and int(value) == stage.index):
            if stage.index < current:
                return stage
            if strict:
                raise BuildError(f"{where}: {value!r} refers to the current or a later build stage")
    return None


def base_stage(dockerfile: Dockerfile, stage: Stage, name: str) -> Stage | None:
    """The earlier stage a FROM names (FROM takes stage names, not indexes)."""
    if name.isdigit():
        return None
    where = stage.instruction.where(dockerfile.filename)
    return stage_ref(dockerfile, stage.index, name, where, strict=False)


def base_name(dockerfile: Dockerfile, stage: Stage, meta: Mapping[str, str | None]) -> str:
    """The FROM image text with the global ARGs substituted."""
    where = stage.instruction.where(dockerfile.filename)
    try:
        name = expand(stage.base, defined(meta), dockerfile.escape)
    except DockerfileError as error:
        raise DockerfileError(f"{where}: {error}") from None
    if not name:
        raise DockerfileError(f"{where}: the base image name is empty after substitution")
    return name


def _dependencies(
    dockerfile: Dockerfile, stage: Stage, meta: Mapping[str, str | None]
) -> set[int]:
    deps: set[int] = set()
    base = base_stage(dockerfile, stage, base_name(dockerfile, stage, meta))
    if base is not None:
        deps.add(base.index)
    for step in stage.steps:
        source = step.flag("from") if step.keyword in ("COPY", "ADD") else None
        if source:
            name = expand(source, defined(meta), dockerfile.escape)
            ref = stage_ref(dockerfile, stage.index, name, step.where(dockerfile.filename))
            if ref is not None:
                deps.add(ref.index)
    return deps


def plan(dockerfile: Dockerfile, target: str | None, meta: Mapping[str, str | None]) -> Plan:
    """The stages needed for `target` (default: the last stage), in file order."""
    if target is None:
        chosen = dockerfile.stages[-1]
    else:
        try:
            chosen = dockerfile.stage(target)
        except DockerfileError:
            raise BuildError(f"target stage {target!r} could not be found in "
                             f"{dockerfile.filename}") from None
    needed, pending = {chosen.index}, [chosen.index]
    while pending:
        for dep in _dependencies(dockerfile, dockerfile.stages[pending.pop()], meta):
            if dep not in needed:
                needed.add(dep)
                pending.append(dep)
    stages = tuple(s for s in dockerfile.stages if s.index in needed)
    return Plan(stages, chosen, sum(1 + len(s.steps) for s in stages))
