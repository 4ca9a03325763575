"""Helpers of the builder tests: tiny sh buildpacks, a harness that builds a tree with a real
engine and keeps the streamed log, and readers of what a release image holds."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from paas.builders.base import Builder, BuildJob, BuildResult
from paas.config import Settings
from paas.engine.containers import ContainerSpec
from paas.engine.engine import Engine
from paas.engine.images import Image

BuildFunction = Callable[[BuildJob], BuildResult]


class BuildpackFactory(Protocol):
    """`packs(folder, detect_file=..., name=..., compile_sh=..., release_sh=..., web=...)`: a
    buildpack in the test's buildpacks root, added to its `order` file."""

    def __call__(self, folder: str, /, **kwargs: Any) -> Path: ...


def make_pack(
    path: Path, *, detect_file: str, name: str | None = None, compile_sh: str | None = None,
    release_sh: str | None = None, web: str | None = None,
) -> Path:
    """A buildpack at `path` whose detect passes when BUILD_DIR holds `detect_file`."""
    label = name or path.name
    detect = f'#!/bin/sh\nif [ -e "$1/{detect_file}" ]; then echo "{label}"; exit 0; fi\nexit 1\n'
    compile_default = f'#!/bin/sh\necho "       compiled by {path.name}"\n'
    types = f"  web: {web}" if web else ""
    release_default = f"#!/bin/sh\ncat <<'EOF'\n---\ndefault_process_types:\n{types}\nEOF\n"
    scripts = {"detect": detect, "compile": compile_sh or compile_default,
               "release": release_sh or release_default}
    (path / "bin").mkdir(parents=True, exist_ok=True)
    for script, text in scripts.items():
        (path / "bin" / script).write_text(text)
        (path / "bin" / script).chmod(0o755)
    return path


def write_tree(root: Path, files: Mapping[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@dataclass
class Built:
    result: BuildResult
    log: list[str] = field(default_factory=list)


class Harness:
    """Builds trees with one engine and stack; each build gets a fresh source folder."""

    def __init__(self, engine: Engine, stack: str, tmp: Path) -> None:
        self.engine, self.stack, self.tmp = engine, stack, tmp
        self.last_log: str = ""
        self._count = itertools.count()

    def settings(self, **changes: object) -> Settings:
        return Settings(home=self.tmp / "home", **changes)  # type: ignore[arg-type]

    def build(
        self, builder: Builder | BuildFunction, files: Mapping[str, str], *,
        config: Mapping[str, str] | None = None, app: str = "demo", selected: str = "",
    ) -> Built:
        source = write_tree(self.tmp / f"src-{next(self._count)}", files)
        return self.build_dir(builder, source, config=config, app=app, selected=selected)

    def build_dir(
        self, builder: Builder | BuildFunction, source: Path, *,
        config: Mapping[str, str] | None = None, app: str = "demo", selected: str = "",
        on_line: Callable[[str], None] | None = None, **settings: object,
    ) -> Built:
        lines: list[str] = []

        def log(line: str) -> None:
            lines.append(line)
            if on_line is not None:
                on_line(line)

        job = BuildJob(app, source, self.engine, self.settings(**settings), log,
                       config=dict(config or {}), selected=selected)
        try:
            result = builder(job) if callable(builder) else builder.build(job)
        finally:
            self.last_log = "\n".join(lines)
        return Built(result, lines)

    def read_file(self, image: Image, path: str) -> bytes:
        """A file of the image, from its top-most layer that holds it."""
        for lower in self.engine.images.lowerdirs(image):
            candidate = lower / path.lstrip("/")
            if candidate.is_file():
                return candidate.read_bytes()
        raise FileNotFoundError(path)

    def list_app(self, image: Image) -> list[str]:
        return sorted(p.name for p in (self.engine.images.lowerdirs(image)[0] / "app").iterdir())

    def cgroup_limits(self, container_id: str) -> dict[str, str]:
        cgroups = self.engine.runtime.cgroups
        paths = {p.parent.parent.name: p for p in cgroups.paths(container_id)}
        if cgroups.unified:
            (path,) = paths.values()
            return {"memory": (path / "memory.max").read_text().strip(),
                    "cpu": (path / "cpu.max").read_text().split()[0]}
        return {"memory": (paths["memory"] / "memory.limit_in_bytes").read_text().strip(),
                "cpu": (paths["cpu"] / "cpu.cfs_quota_us").read_text().strip()}


def run_image(engine: Engine, image: Image, *command: str, env: tuple[str, ...] = ()) -> list[str]:
    """Run the image as the scheduler does for launcher images: entrypoint + command."""
    config = image.config
    spec = ContainerSpec(
        name="probe", lowerdirs=tuple(str(p) for p in engine.images.lowerdirs(image)),
        image=image.id, argv=(*(config.entrypoint or ()), *command), env=(*config.env, *env),
        workdir=config.working_dir or "/", user=config.user or "root", network="none",
    )
    lines: list[str] = []
    result = engine.runtime.run(spec, on_output=lines.append)
    engine.runtime.remove(result.container_id)
    assert result.exit_code == 0, lines
    return lines
