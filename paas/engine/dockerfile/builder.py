"""Runs a parsed Dockerfile: each filesystem step becomes a layer, each metadata step a config change."""

from __future__ import annotations

import dataclasses
import glob
import os
import shlex
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from paas.engine.containers import ContainerSpec
from paas.engine.dockerfile.parser import Instruction, parse
from paas.engine.dockerfile.substitute import env_mapping, substitute
from paas.engine.images import Image, ImageConfig, ImageStore
from paas.engine.layers import tar_directory, tar_overlay_upper
from paas.engine.runtime import Runtime
from paas.errors import BuildError, DockerfileError

Log = Callable[[str], None]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class DockerfileBuild:
    """One build of one context; `run()` returns the final image."""

    def __init__(
        self, images: ImageStore, runtime: Runtime, context: Path, log: Log,
        dockerfile: str = "Dockerfile",
    ) -> None:
        self.images, self.runtime, self.context, self.log = images, runtime, context, log
        self.filename = dockerfile
        self.image: Image | None = None
        self.scratch = Path(tempfile.mkdtemp(prefix="paas-build-"))

    def run(self) -> Image:
        path = _inside(self.context, self.filename, self.filename)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DockerfileError(f"cannot read {self.filename}: {exc}") from None
        steps = parse(text, self.filename)
        try:
            for number, step in enumerate(steps, start=1):
                self.log(f"Step {number}/{len(steps)} : {step.keyword} {step.args}")
                self._step(step)
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)
        return self.current

    @property
    def current(self) -> Image:
        """The image the steps so far produced (FROM always comes first)."""
        assert self.image is not None
        return self.image

    @property
    def config(self) -> ImageConfig:
        return self.current.config

    def _variables(self) -> dict[str, str]:
        return env_mapping(self.config.env)

    def _step(self, step: Instruction) -> None:
        handlers: dict[str, Callable[[Instruction], None]] = {
            "FROM": self._from, "RUN": self._run, "COPY": self._copy, "ENV": self._set_env,
            "WORKDIR": self._workdir, "CMD": self._cmd, "ENTRYPOINT": self._entrypoint,
            "USER": self._user, "EXPOSE": self._expose, "LABEL": self._label,
        }
        if self.image is None and step.keyword != "FROM":
            raise DockerfileError(f"{step.where(self.filename)} comes before FROM")
        handlers[step.keyword](step)

    def _commit(self, step: Instruction, config: ImageConfig, layer: Path | None = None) -> None:
        self.image = self.images.commit(self.current, layer, config, f"{step.keyword} {step.args}")

    def _from(self, step: Instruction) -> None:
        words = step.args.split()
        if len(words) != 1:
            raise DockerfileError(f"{step.where(self.filename)}: only 'FROM image' is supported yet")
        self.image = self.images.get(words[0])

    def _run(self, step: Instruction) -> None:
        argv = list(step.exec_form) if step.exec_form else ["/bin/sh", "-c", step.args]
        config = self.config
        spec = ContainerSpec(
            name="build-step",
            lowerdirs=tuple(str(p) for p in self.images.lowerdirs(self.current)),
            argv=tuple(argv),
            env=config.env or (DEFAULT_PATH,),
            workdir=config.working_dir or "/",
            user=config.user or "root",
            hostname="buildkit",
            network="host",
            labels={"paas.role": "build"},
        )
        result = self.runtime.run(spec, on_output=lambda line: self.log(f" {line}"))
        try:
            if result.exit_code != 0:
                raise BuildError(
                    f"{step.where(self.filename)}: '{step.args}' returned a non-zero code: "
                    f"{result.exit_code}"
                )
            layer = self.scratch / "run.tar"
            tar_overlay_upper(Path(result.upper_dir), layer)
            self._commit(step, config, layer)
        finally:
            self.runtime.remove(result.container_id)

    def _copy(self, step: Instruction) -> None:
        words = list(step.exec_form) if step.exec_form else shlex.split(step.args)
        if any(w.startswith("--") for w in words):
            raise DockerfileError(f"{step.where(self.filename)}: COPY flags are not supported yet")
        if len(words) < 2:
            raise DockerfileError(f"{step.where(self.filename)} needs a source and a destination")
        env = self._variables()
        sources = [substitute(w, env) for w in words[:-1]]
        dest = self._absolute(substitute(words[-1], env))
        staging = Path(tempfile.mkdtemp(dir=self.scratch))
        target = staging / dest.relative_to("/")
        paths = [p for s in sources for p in self._sources(step, s)]
        as_dir = words[-1].endswith("/") or len(paths) > 1 or any(p.is_dir() for p in paths)
        for path in paths:
            _copy_into(path, target / path.name if as_dir and not path.is_dir() else target)
        layer = self.scratch / "copy.tar"
        tar_directory(staging, layer)
        self._commit(step, self.config, layer)

    def _sources(self, step: Instruction, source: str) -> list[Path]:
        pattern = str(_inside(self.context, source, step.where(self.filename)))
        matches = sorted(Path(p) for p in glob.glob(pattern))
        if not matches:
            raise BuildError(f"{step.where(self.filename)}: {source!r} not found in the build context")
        return [_inside(self.context, str(m.relative_to(self.context)), step.where(self.filename))
                for m in matches]

    def _absolute(self, path: str) -> PurePosixPath:
        workdir = PurePosixPath(self.config.working_dir or "/")
        return PurePosixPath(os.path.normpath(workdir / path))

    def _set_env(self, step: Instruction) -> None:
        env = self._variables()
        for key, value in _pairs(step, self.filename):
            env[key] = substitute(value, env)
        items = tuple(f"{k}={v}" for k, v in env.items())
        self._commit(step, dataclasses.replace(self.config, env=items))

    def _workdir(self, step: Instruction) -> None:
        path = self._absolute(substitute(step.args, self._variables()))
        staging = Path(tempfile.mkdtemp(dir=self.scratch))
        (staging / path.relative_to("/")).mkdir(parents=True, exist_ok=True)
        layer = self.scratch / "workdir.tar"
        tar_directory(staging, layer)
        self._commit(step, dataclasses.replace(self.config, working_dir=str(path)), layer)

    def _cmd(self, step: Instruction) -> None:
        cmd = step.exec_form if step.exec_form is not None else ("/bin/sh", "-c", step.args)
        self._commit(step, dataclasses.replace(self.config, cmd=cmd))

    def _entrypoint(self, step: Instruction) -> None:
        entry = step.exec_form if step.exec_form is not None else ("/bin/sh", "-c", step.args)
        # Docker's rule: setting ENTRYPOINT clears a CMD inherited from the base image.
        self._commit(step, dataclasses.replace(self.config, entrypoint=entry, cmd=None))

    def _user(self, step: Instruction) -> None:
        self._commit(step, dataclasses.replace(self.config, user=substitute(step.args, self._variables())))

    def _expose(self, step: Instruction) -> None:
        ports = [substitute(w, self._variables()) for w in step.args.split()]
        ports = [p if "/" in p else f"{p}/tcp" for p in ports]
        merged = tuple(sorted(set(self.config.exposed_ports) | set(ports)))
        self._commit(step, dataclasses.replace(self.config, exposed_ports=merged))

    def _label(self, step: Instruction) -> None:
        labels = dict(self.config.labels)
        labels.update(_pairs(step, self.filename))
        self._commit(step, dataclasses.replace(self.config, labels=labels))


def _pairs(step: Instruction, filename: str) -> list[tuple[str, str]]:
    """`K=V K2="v 2"` or the legacy `K value with spaces`."""
    words = shlex.split(step.args)
    if words and "=" not in words[0]:
        key, _, rest = step.args.partition(" ")
        return [(key, rest.strip())]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise DockerfileError(f"{step.where(filename)}: expected KEY=VALUE, got {word!r}")
        pairs.append((key, value))
    return pairs


def _inside(context: Path, relative: str, where: str) -> Path:
    """`relative` resolved inside the build context, refusing escapes (.., absolute, symlinks)."""
    root = context.resolve()
    candidate = (root / relative.lstrip("/")).resolve()
    if candidate != root and root not in candidate.parents:
        raise BuildError(f"{where}: {relative!r} is outside the build context")
    return candidate


def _copy_into(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target, follow_symlinks=False)


def build_dockerfile(
    images: ImageStore, runtime: Runtime, context: Path, log: Log, dockerfile: str = "Dockerfile"
) -> Image:
    return DockerfileBuild(images, runtime, context, log, dockerfile).run()
