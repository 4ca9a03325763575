"""Helpers of the buildpack tests: run buildpack programs and app processes in containers of
the stack image, as the buildpack builder runs them: source at /app, the buildpack at /buildpack,
CACHE_DIR at /cache, ENV_DIR at /env, as the stack's non-root user."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from paas.engine.baseimages import STACK_ENV, STACK_UID
from paas.engine.containers import Bind, ContainerSpec
from paas.engine.engine import Engine

BUILDPACKS = Path(__file__).resolve().parents[2] / "buildpacks"
APP, CACHE, ENV, PACK = "/app", "/cache", "/env", "/buildpack"
# What the builder's launcher does: source .profile.d, then the command through /bin/sh -c.
LAUNCH = 'for f in /app/.profile.d/*.sh; do [ -f "$f" ] && . "$f"; done; exec /bin/sh -c "$0"'


@dataclass
class Step:
    code: int
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class StackRunner:
    """Runs buildpack programs and app processes in containers of the stack image."""

    def __init__(self, engine: Engine, lowerdirs: tuple[str, ...]) -> None:
        self.engine, self.lowerdirs = engine, lowerdirs
        self._names = itertools.count()

    def spec(self, argv: tuple[str, ...], binds: tuple[Bind, ...],
             env: tuple[str, ...] = ()) -> ContainerSpec:
        """A container of the stack as its user, on the engine's bridge (builds have network)."""
        return ContainerSpec(
            name=f"bp-{next(self._names)}", lowerdirs=self.lowerdirs, argv=argv,
            env=(*STACK_ENV, *env), workdir=APP, user=f"{STACK_UID}:{STACK_UID}", binds=binds,
            network="bridge",
        )

    def buildpack(self, pack: str | Path, program: str, app: Path, cache: Path | None = None,
                  config: Mapping[str, str] | None = None) -> Step:
        """Run bin/PROGRAM of a buildpack (a name under buildpacks/ or a path) on `app`:
        detect and release get BUILD_DIR, compile BUILD_DIR CACHE_DIR ENV_DIR."""
        pack_dir = pack if isinstance(pack, Path) else BUILDPACKS / pack
        binds = [Bind(str(app), APP), Bind(str(pack_dir), PACK, True)]
        argv: tuple[str, ...] = (f"{PACK}/bin/{program}", APP)
        if program == "compile":
            assert cache is not None, "compile needs a CACHE_DIR"
            env_dir = write_env_dir(cache.parent / f"{cache.name}-env", config or {})
            binds += [Bind(str(cache), CACHE), Bind(str(env_dir), ENV, True)]
            argv = (*argv, CACHE, ENV)
        for path in (app, cache):
            if path is not None:
                chown_tree(path, STACK_UID)
        step = Step(0)
        result = self.engine.runtime.run(self.spec(argv, tuple(binds)), on_output=step.lines.append)
        self.engine.runtime.remove(result.container_id)
        step.code = result.exit_code
        return step

    def serve(self, app: Path, command: str, port: int = 5000) -> str:
        """Start `command` (a Procfile line) in a detached container of the compiled app; its IP."""
        spec = self.spec(("/bin/sh", "-c", LAUNCH, command), (Bind(str(app), APP),),
                         env=(f"PORT={port}",))
        runtime = self.engine.runtime
        container = runtime.create(spec)
        container = runtime.start(container.id)
        assert container.state.ip, runtime.logs_path(container.id).read_text()
        return container.state.ip

    def logs(self, ip: str) -> str:
        """The output of the served container with this IP."""
        for container in self.engine.runtime.list():
            if container.state.ip == ip:
                return self.engine.runtime.logs_path(container.id).read_text(errors="replace")
        return ""


def write_env_dir(path: Path, config: Mapping[str, str]) -> Path:
    """ENV_DIR: one file per config var, named by its key, holding its exact value."""
    path.mkdir(parents=True, exist_ok=True)
    for key, value in config.items():
        (path / key).write_text(value)
    return path


def chown_tree(root: Path, uid: int) -> None:
    for path in (root, *root.rglob("*")):
        if path.stat(follow_symlinks=False).st_uid != uid:
            os.lchown(path, uid, uid)
