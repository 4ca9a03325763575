"""Runs a Dockerfile: the stages a target needs, each step a cached image; `build_dockerfile`.

Every step but ARG commits an image (metadata-only steps as empty_layer history entries), keyed
in the store's build cache by `cache.step_key`: an unchanged step reuses the image without any
commit, tar or snapshot work, so a rebuild of an unchanged context costs a few index reads and
the context checksums. RUN executes in a one-shot build container on the engine's bridge,
reaching the outside through its NAT, as Docker's builder does; COPY and ADD write a staging
tree (see copy.py and transfer.py).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paas.engine.containers import ContainerSpec
from paas.engine.dockerfile import metadata, stages
from paas.engine.dockerfile.cache import step_key
from paas.engine.dockerfile.context import BuildContext
from paas.engine.dockerfile.copy import Staging, user_ids
from paas.engine.dockerfile.imagefs import ImageFS
from paas.engine.dockerfile.parser import Dockerfile, Instruction, Stage, parse, parse_instruction
from paas.engine.dockerfile.state import Outcome, StageState
from paas.engine.dockerfile.substitute import expand_args
from paas.engine.dockerfile.transfer import transfer_step
from paas.engine.images import Image, ImageConfig, ImageStore
from paas.engine.layers import tar_directory, tar_overlay_upper
from paas.engine.runtime import Runtime
from paas.errors import BuildError, ContainerError, DockerfileError, ImageNotFoundError

Log = Callable[[str], None]
Pull = Callable[[str], Image]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILD_LABEL = "paas.build"
# Instructions that may not run as ONBUILD triggers (the parser refuses them in a Dockerfile,
# but an image's config is data from elsewhere).
_NOT_TRIGGERS = frozenset({"FROM", "ONBUILD", "MAINTAINER"})


@dataclass(frozen=True, slots=True)
class Options:
    build_args: Mapping[str, str]
    no_cache: bool
    pull: Pull | None


class Build:
    """One build of one Dockerfile; `run(target)` returns the target stage's image."""

    def __init__(
        self, images: ImageStore, runtime: Runtime, context: BuildContext, dockerfile: Dockerfile,
        log: Log, options: Options, scratch: Path,
    ) -> None:
        self.images, self.runtime, self.context, self.log = images, runtime, context, log
        self.dockerfile, self.options, self.scratch = dockerfile, options, scratch
        self.id = uuid.uuid4().hex
        self.results: dict[int, Image | None] = {}
        self.meta: dict[str, str | None] = {}
        self.consumed: set[str] = set()
        self.step_number, self.total = 0, 0
        self.containers_used = False

    # -- stages ----------------------------------------------------------------------------

    def run(self, target: str | None) -> Image:
        self.meta = stages.global_args(self.dockerfile, self.options.build_args, self.consumed)
        plan = stages.plan(self.dockerfile, target, self.meta)
        self.total = plan.total_steps
        for stage in plan.stages:
            self.results[stage.index] = self._stage(stage)
        image = self.results[plan.target.index]
        if image is None:
            where = plan.target.instruction.where(self.dockerfile.filename)
            raise BuildError(f"{where}: the stage made no image (FROM scratch with no steps)")
        unused = sorted(set(self.options.build_args) - self.consumed)
        if unused:
            self.log(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed")
        return image

    def _stage(self, stage: Stage) -> Image | None:
        state = self._from(stage)
        for instruction in stage.steps:
            self._announce(instruction)
            self._step(state, instruction)
        return state.image

    def _announce(self, instruction: Instruction) -> None:
        self.step_number += 1
        self.log(f"Step {self.step_number}/{self.total} : {instruction.original}")

    def where(self, instruction: Instruction) -> str:
        return instruction.where(self.dockerfile.filename)

    def _from(self, stage: Stage) -> StageState:
        self._announce(stage.instruction)
        name = stages.base_name(self.dockerfile, stage, self.meta)
        where = self.where(stage.instruction)
        ref = stages.base_stage(self.dockerfile, stage, name)
        if ref is not None:
            image = self.results[ref.index]
        elif name.lower() == "scratch":
            image = None
        else:
            image = self.image(name, where)
        state = StageState(stage, image, image.config if image else ImageConfig())
        if image is not None:
            self.log(f" ---> {image.short_id}")
        self._triggers(state)
        return state

    def image(self, name: str, where: str) -> Image:
        """A FROM or --from image: from the store, else pulled, else ImageNotFoundError."""
        if self.images.has(name):
            return self.images.get(name)
        if self.options.pull is not None:
            return self.options.pull(name)
        raise ImageNotFoundError(
            f"{where}: image not found: {name!r} is not in the local image store "
            "(and no registry to pull it from)"
        )

    def _triggers(self, state: StageState) -> None:
        """The base image's ONBUILD triggers run right after FROM and are not inherited further."""
        triggers = state.config.on_build
        if not triggers:
            return
        self.log(f" # Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}")
        state.config = state.config.replace(on_build=())
        line = state.stage.instruction.line
        for text in triggers:
            instruction = parse_instruction(text, line, self.dockerfile.filename, self.dockerfile.escape)
            if instruction.keyword in _NOT_TRIGGERS:
                raise BuildError(f"{self.where(instruction)}: not allowed as an ONBUILD trigger")
            self.log(f" # ONBUILD {instruction.original}")
            self._step(state, instruction)

    # -- steps -----------------------------------------------------------------------------

    def _step(self, state: StageState, instruction: Instruction) -> None:
        try:
            self._dispatch(state, instruction)
        except DockerfileError as error:
            where, message = self.where(instruction), str(error)
            if message.startswith(self.dockerfile.filename):
                raise
            raise DockerfileError(f"{where}: {message}") from None

    def _dispatch(self, state: StageState, instruction: Instruction) -> None:
        keyword = instruction.keyword
        if keyword == "ARG":
            self._arg(state, instruction)
        elif keyword == "RUN":
            self._run(state, instruction)
        elif keyword in ("COPY", "ADD"):
            inputs, make = transfer_step(self, state, instruction)
            self.commit_step(state, instruction, inputs, make)
        elif keyword == "WORKDIR":
            self._workdir(state, instruction)
        elif keyword in metadata.CONFIG_KEYWORDS:
            self._metadata(state, instruction)
        else:
            raise DockerfileError(f"{self.where(instruction)}: unexpected {keyword} inside a stage")

    def commit_step(
        self, state: StageState, instruction: Instruction, inputs: Mapping[str, Any],
        make: Callable[[], Outcome],
    ) -> None:
        """Reuse the cached image of this step, or make, commit and remember a new one."""
        key = step_key(state.image, state.config, instruction.keyword, inputs)
        if not self.options.no_cache:
            hit = self.images.cache_get(key)
            if hit is not None:
                self._advance(state, hit)
                self.log(f" ---> CACHED {hit.short_id}")
                return
        outcome = make()
        image = self.images.commit(state.image, outcome.layer, outcome.config, instruction.original)
        if outcome.layer is not None:
            outcome.layer.unlink(missing_ok=True)
        self.images.cache_put(key, image)
        self._advance(state, image)
        self.log(f" ---> {image.short_id}")

    @staticmethod
    def _advance(state: StageState, image: Image) -> None:
        state.image, state.config = image, image.config

    def _arg(self, state: StageState, instruction: Instruction) -> None:
        """ARG: in scope from here to the end of the stage; not part of the image config."""
        build_args = self.options.build_args
        for name, default in expand_args(instruction.args, state.variables(), self.dockerfile.escape):
            self.consumed.add(name)
            value = build_args.get(name, default if default is not None else self.meta.get(name))
            if value is None:
                state.args.pop(name, None)
            else:
                state.args[name] = value

    def _metadata(self, state: StageState, instruction: Instruction) -> None:
        config = metadata.apply(
            state.config, instruction, state.variables(), escape=self.dockerfile.escape,
            cmd_set=state.cmd_set, filename=self.dockerfile.filename,
        )
        state.cmd_set = state.cmd_set or instruction.keyword == "CMD"
        inputs = {"instruction": instruction.original, "result": config.to_oci(),
                  "cmd_set": state.cmd_set}
        self.commit_step(state, instruction, inputs, lambda: Outcome(None, config))

    def _workdir(self, state: StageState, instruction: Instruction) -> None:
        """WORKDIR sets the config and creates the directory (a layer only when it is missing)."""
        config = metadata.apply(
            state.config, instruction, state.variables(), escape=self.dockerfile.escape,
            filename=self.dockerfile.filename,
        )
        path = config.working_dir

        def make() -> Outcome:
            fs = self.fs(state.image)
            node = fs.node(path)
            if node is not None and node.is_dir:
                return Outcome(None, config)
            root = self.staging_dir()
            Staging(root, fs, user_ids(fs, config.user), None).ensure_dir(path)
            return Outcome(self.tar(root), config)

        self.commit_step(state, instruction, {"path": path, "result": config.to_oci()}, make)

    def _run(self, state: StageState, instruction: Instruction) -> None:
        if state.image is None:
            raise BuildError(f"{self.where(instruction)}: cannot run a command in an empty "
                             "FROM scratch stage: there is no filesystem yet")
        form = instruction.exec_form
        argv = form if form is not None else metadata.shell_form(state.config, instruction.args)
        if not argv:
            raise DockerfileError(f"{self.where(instruction)}: requires a command")
        env = run_env(state.config, state.args)
        inputs = {"argv": list(argv), "env": list(env)}
        self.commit_step(state, instruction, inputs, lambda: self._execute(state, instruction, argv, env))

    def _execute(
        self, state: StageState, instruction: Instruction, argv: tuple[str, ...], env: tuple[str, ...]
    ) -> Outcome:
        assert state.image is not None
        config = state.config
        spec = ContainerSpec(
            name=f"build-{self.id[:12]}", lowerdirs=tuple(str(p) for p in self.images.lowerdirs(state.image)),
            argv=argv, env=env, image=state.image.id, workdir=config.working_dir or "/",
            user=config.user or "root", hostname="buildkit",
            network="bridge",
            labels={"paas.role": "build", BUILD_LABEL: self.id},
        )
        self.containers_used = True
        try:
            result = self.runtime.run(spec, on_output=self.log)
        except ContainerError as error:
            raise BuildError(f"{self.where(instruction)}: {error}") from None
        try:
            if result.exit_code != 0:
                raise BuildError(
                    f"{self.where(instruction)}: '{instruction.args}' returned a non-zero code: "
                    f"{result.exit_code}"
                )
            layer = self.scratch / f"run-{self.step_number}.tar"
            tar_overlay_upper(result.upper_dir, layer)
        finally:
            self.runtime.remove(result.container_id, timeout=0)
        return Outcome(layer, config)

    # -- helpers used by the steps -----------------------------------------------------------

    def fs(self, image: Image | None) -> ImageFS:
        return ImageFS(self.images.lowerdirs(image) if image is not None else [])

    def staging_dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.scratch, prefix="stage-"))

    def tar(self, root: Path) -> Path:
        """The staging tree as a layer tar; the tree is removed."""
        layer = root.with_suffix(".tar")
        tar_directory(root, layer)
        shutil.rmtree(root)
        return layer

    def remove_containers(self) -> None:
        """Build containers left behind by a failure or an interrupt."""
        if self.containers_used:
            for container in self.runtime.list({BUILD_LABEL: self.id}):
                self.runtime.remove(container.id, timeout=0)


def run_env(config: ImageConfig, args: Mapping[str, str]) -> tuple[str, ...]:
    """RUN's environment: the config's ENV, then the ARGs in scope that ENV does not override."""
    env = config.env_dict()
    extra = tuple(f"{k}={v}" for k, v in sorted(args.items()) if k not in env)
    path = () if "PATH" in env or "PATH" in args else (DEFAULT_PATH,)
    return (*config.env, *extra, *path)


def read_dockerfile(context: Path, dockerfile: str) -> Dockerfile:
    """Parse the Dockerfile: a path relative to the context (never out of it) or absolute."""
    path = Path(dockerfile)
    if not path.is_absolute():
        root = context.resolve()
        path = (root / dockerfile).resolve()
        if path != root and root not in path.parents:
            raise BuildError(f"the Dockerfile {dockerfile!r} is outside the build context")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise BuildError(f"cannot find {dockerfile} in {context}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DockerfileError(f"cannot read {dockerfile}: {error}") from None
    return parse(text, Path(dockerfile).name if path.is_absolute() else dockerfile)


def build_dockerfile(
    images: ImageStore, runtime: Runtime, context: Path, log: Log, dockerfile: str = "Dockerfile",
    *, build_args: Mapping[str, str] | None = None, target: str | None = None,
    no_cache: bool = False, pull: Pull | None = None, tag: str | None = None,
) -> Image:
    """Build the Dockerfile in `context` and return the (target stage's) image, tagged if asked."""
    parsed = read_dockerfile(context, dockerfile)
    build_context = BuildContext.open(context, dockerfile)
    scratch = Path(tempfile.mkdtemp(dir=images.scratch, prefix="build-"))
    build = Build(images, runtime, build_context, parsed, log,
                  Options(dict(build_args or {}), no_cache, pull), scratch)
    try:
        image = build.run(target)
    finally:
        try:
            build.remove_containers()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    log(f"Successfully built {image.short_id}")
    if tag:
        log(f"Successfully tagged {images.tag(image, tag)}")
    return image
