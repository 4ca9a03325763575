"""The buildpack builder: Heroku's buildpack API (detect, compile, release) in a builder container.

Buildpacks live in `buildpacks/<name>/bin/`; `buildpacks/order` lists the order of detection.
They run inside a container of the stack image with the source bind-mounted at /app, the
per-app cache at /cache and the config at /env; they are executed, never imported. The
compiled /app becomes one layer on the stack image.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import yaml

from paas.builders.base import BuildJob, BuildResult, read_procfile
from paas.engine.containers import Bind, ContainerSpec
from paas.engine.images import Image
from paas.engine.layers import tar_directory
from paas.errors import BuildError

BUILDPACKS_DIR = Path(__file__).resolve().parents[2] / "buildpacks"
STACK_IMAGE = "debian:bookworm"
APP_DIR = "/app"


def buildpack_order(root: Path = BUILDPACKS_DIR) -> list[Path]:
    names = [n.strip() for n in (root / "order").read_text().splitlines()]
    return [root / n for n in names if n and not n.startswith("#")]


class BuildpackBuilder:
    name = "buildpack"

    def __init__(self, root: Path = BUILDPACKS_DIR) -> None:
        self.root = root

    def detect(self, source: Path) -> bool:
        # Whether some buildpack applies is for the buildpacks to say, in a container.
        return True

    def build(self, job: BuildJob) -> BuildResult:
        stack = job.engine.images.get(STACK_IMAGE)
        session = _Session(job, stack)
        try:
            pack, name = session.detect(buildpack_order(self.root))
            job.log(f"-----> {name} app detected")
            session.step(pack, ["bin/compile", APP_DIR, "/cache", "/env"], "compile")
            defaults = session.release(pack)
            image = session.commit(name)
        finally:
            session.close()
        processes = {**defaults, **read_procfile(job.source)}
        if not processes:
            raise BuildError("no process types: add a Procfile with a 'web:' line")
        return BuildResult(image=image, processes=processes)


class _Session:
    """The directories and container specs of one buildpack build."""

    def __init__(self, job: BuildJob, stack: Image) -> None:
        self.job, self.stack = job, stack
        self.cache = job.settings.home / "cache" / job.app
        self.cache.mkdir(parents=True, exist_ok=True)
        self.scratch = Path(tempfile.mkdtemp(prefix="paas-buildpack-"))
        self.env_dir = self.scratch / "env"
        self.env_dir.mkdir()

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _spec(self, pack: Path, argv: list[str]) -> ContainerSpec:
        images = self.job.engine.images
        return ContainerSpec(
            name=f"build-{self.job.app}",
            lowerdirs=tuple(str(p) for p in images.lowerdirs(self.stack)),
            argv=(f"/buildpack/{argv[0]}", *argv[1:]),
            env=(*self.stack.config.env, "HOME=/app", "STACK=debian-bookworm"),
            workdir=APP_DIR,
            user="root",
            hostname="builder",
            network="bridge",
            binds=(
                Bind(str(self.job.source), APP_DIR, False),
                Bind(str(pack), "/buildpack", True),
                Bind(str(self.cache), "/cache", False),
                Bind(str(self.env_dir), "/env", True),
            ),
            labels={"paas.role": "build", "paas.app": self.job.app},
        )

    def _run(self, pack: Path, argv: list[str], log: bool = True) -> tuple[int, list[str]]:
        lines: list[str] = []

        def sink(line: str) -> None:
            lines.append(line)
            if log:
                self.job.log(line)

        runtime = self.job.engine.runtime
        result = runtime.run(self._spec(pack, argv), on_output=sink)
        runtime.remove(result.container_id)
        return result.exit_code, lines

    def detect(self, order: list[Path]) -> tuple[Path, str]:
        for pack in order:
            code, lines = self._run(pack, ["bin/detect", APP_DIR], log=False)
            if code == 0:
                return pack, (lines[0].strip() if lines else pack.name) or pack.name
        names = ", ".join(p.name for p in order)
        raise BuildError(
            f"no buildpack detected this app (tried: {names}); add a Dockerfile or a Procfile"
        )

    def step(self, pack: Path, argv: list[str], what: str) -> None:
        code, _ = self._run(pack, argv)
        if code != 0:
            raise BuildError(f"the {pack.name} buildpack's {what} failed (exit {code})")

    def release(self, pack: Path) -> dict[str, str]:
        code, lines = self._run(pack, ["bin/release", APP_DIR], log=False)
        if code != 0:
            raise BuildError(f"the {pack.name} buildpack's release failed (exit {code})")
        try:
            data = yaml.safe_load("\n".join(lines)) or {}
        except yaml.YAMLError as exc:
            raise BuildError(f"the {pack.name} buildpack's release printed bad YAML: {exc}") from None
        types = data.get("default_process_types") if isinstance(data, dict) else None
        if not isinstance(types, dict):
            return {}
        return {str(k): str(v) for k, v in types.items()}

    def commit(self, name: str) -> Image:
        layer = self.scratch / "app.tar"
        tar_directory(self.job.source, layer, prefix=APP_DIR)
        config = dataclasses.replace(
            self.stack.config, working_dir=APP_DIR, cmd=None, env=(*self.stack.config.env, "HOME=/app")
        )
        return self.job.engine.images.commit(self.stack, layer, config, f"buildpack {name}")
