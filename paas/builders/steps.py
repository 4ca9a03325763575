"""The buildpack steps (detect, compile, release), each run in a builder container.

A builder container is made from the stack image and runs as the stack's non-root user with
network, under the build limits. The source is bind-mounted at /app (BUILD_DIR), the app's
cache at /cache (CACHE_DIR), one file per config var at /env (ENV_DIR) and the buildpack,
read-only, at /buildpack. Compile output is relayed line by line as the buildpack prints it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from paas.builders.base import BuildJob
from paas.builders.sources import Buildpack
from paas.core.names import validate_config_key
from paas.engine.baseimages import STACK_UID
from paas.engine.containers import Bind, ContainerSpec
from paas.engine.images import Image
from paas.errors import BuildError, ContainerError

APP_DIR = "/app"
CACHE_DIR = "/cache"
ENV_DIR = "/env"
PACK_DIR = "/buildpack"
PACKS_DIR = "/buildpacks"
BUILD_UID = BUILD_GID = STACK_UID  # the stack's non-root user
BUILD_USER = f"{BUILD_UID}:{BUILD_GID}"
LABEL_ROLE, ROLE_BUILD, LABEL_APP = "paas.role", "build", "paas.app"
# Runs every candidate's bin/detect in ONE container; prints `index TAB exit-code TAB name`.
# With "first" it stops at the first that passes. The paths come in as arguments.
DETECT_SCRIPT = """mode=$1; shift; i=0
for pack do
  name=$("$pack/bin/detect" /app 2>/dev/null); code=$?
  name=$(printf '%s\\n' "$name" | head -n 1)
  if [ "$mode" = all ] || [ "$code" -eq 0 ]; then printf '%s\\t%s\\t%s\\n' "$i" "$code" "$name"; fi
  if [ "$mode" = first ] && [ "$code" -eq 0 ]; then exit 0; fi
  i=$((i + 1))
done
"""


@dataclass(frozen=True, slots=True)
class Detected:
    pack: Buildpack
    name: str  # what its bin/detect printed ("Python"); "" when it did not pass
    passed: bool


class Steps:
    """The folders and containers of one buildpack build; close() removes the scratch."""

    def __init__(self, job: BuildJob, stack: Image, app_cache: Path) -> None:
        """`app_cache`: the app's folder of caches; CACHE_DIR is its `cache` subfolder."""
        self.job, self.stack, self.cache = job, stack, app_cache / "cache"
        self.cache.mkdir(parents=True, exist_ok=True)
        # Beside CACHE_DIR (so `apps:destroy` removes a scratch a killed build left), 0700:
        # ENV_DIR holds the app's secrets; the container sees only the env folder itself.
        self.scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=app_cache))
        self.env_dir = self.scratch / "env"
        try:
            _prepare(job, self.cache, self.env_dir)
        except BaseException:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise

    def close(self) -> None:
        """Remove the scratch, and any build container of the app a failed start left behind
        (builds of one app never overlap: the deploy holds the app's lock)."""
        shutil.rmtree(self.scratch, ignore_errors=True)
        runtime = self.job.engine.runtime
        for container in runtime.list({LABEL_ROLE: ROLE_BUILD, LABEL_APP: self.job.app}):
            with contextlib.suppress(ContainerError):
                runtime.remove(container.id, timeout=0)

    def detect(self, packs: list[Buildpack], *, every: bool) -> list[Detected]:
        """bin/detect of each pack (every=True) or up to the first that passes."""
        binds = tuple(Bind(str(p.path), f"{PACKS_DIR}/{i}", True) for i, p in enumerate(packs))
        argv = ("/bin/sh", "-c", DETECT_SCRIPT, "detect", "all" if every else "first",
                *(f"{PACKS_DIR}/{i}" for i in range(len(packs))))
        code, lines = self._run(argv, binds, None)
        if code != 0:
            raise BuildError(f"the buildpack detection failed (exit {code}): {' '.join(lines)[-300:]}")
        found = []
        for line in lines:
            index, status, name = (line.split("\t", 2) + ["", ""])[:3]
            if index.isdigit() and int(index) < len(packs):
                found.append(Detected(packs[int(index)], name.strip(), status == "0"))
        return found

    def compile(self, pack: Buildpack) -> None:
        argv = (f"{PACK_DIR}/bin/compile", APP_DIR, CACHE_DIR, ENV_DIR)
        code, _ = self._run(argv, (Bind(str(pack.path), PACK_DIR, True),), self.job.log)
        if code != 0:
            raise BuildError(f"the {pack.name} buildpack's compile failed (exit {code})")

    def release(self, pack: Buildpack) -> dict[str, str]:
        """The default_process_types of the pack's bin/release (none if it has no release)."""
        if not (pack.path / "bin" / "release").is_file():
            return {}
        argv = (f"{PACK_DIR}/bin/release", APP_DIR)
        code, lines = self._run(argv, (Bind(str(pack.path), PACK_DIR, True),), None)
        if code != 0:
            raise BuildError(f"the {pack.name} buildpack's release failed (exit {code})")
        return parse_release("\n".join(lines), pack.name)

    def _spec(self, argv: tuple[str, ...], binds: tuple[Bind, ...]) -> ContainerSpec:
        job, images = self.job, self.job.engine.images
        return ContainerSpec(
            name=f"build-{job.app}",
            lowerdirs=tuple(str(p) for p in images.lowerdirs(self.stack)),
            image=self.stack.id,
            argv=argv,
            env=(*self.stack.config.env, f"HOME={APP_DIR}"),
            workdir=APP_DIR,
            user=BUILD_USER,
            hostname="builder",
            network="bridge",
            binds=(
                Bind(str(job.source), APP_DIR, False),
                Bind(str(self.cache), CACHE_DIR, False),
                Bind(str(self.env_dir), ENV_DIR, True),
                *binds,
            ),
            labels={LABEL_ROLE: ROLE_BUILD, LABEL_APP: job.app},
            memory_bytes=job.settings.build_memory,
            cpus=job.settings.build_cpus,
        )

    def _run(
        self, argv: tuple[str, ...], binds: tuple[Bind, ...], relay: Callable[[str], None] | None
    ) -> tuple[int, list[str]]:
        lines: list[str] = []

        def sink(line: str) -> None:
            if relay is not None:
                relay(line)
            else:
                lines.append(line)

        runtime = self.job.engine.runtime
        result = runtime.run(self._spec(argv, binds), on_output=sink)
        runtime.remove(result.container_id)
        return result.exit_code, lines


def parse_release(text: str, name: str) -> dict[str, str]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise BuildError(f"the {name} buildpack's release printed bad YAML: {exc}") from None
    types = data.get("default_process_types") if isinstance(data, dict) else None
    if not isinstance(types, dict):
        return {}
    return {str(k): str(v) for k, v in types.items() if v is not None}


def _prepare(job: BuildJob, cache: Path, env_dir: Path) -> None:
    """Hand the source and the cache to the build user; write ENV_DIR (root-owned, readable)."""
    env_dir.mkdir()
    os.chmod(env_dir, 0o755)
    for key, value in job.config.items():
        path = env_dir / validate_config_key(key)  # a file name: never a path
        path.write_bytes(value.encode("utf-8", errors="surrogateescape"))
        os.chmod(path, 0o644)
    if cache.stat().st_uid != BUILD_UID:
        chown_tree(cache)
    chown_tree(job.source)


def chown_tree(root: Path) -> None:
    os.lchown(root, BUILD_UID, BUILD_GID)
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(directory, name), BUILD_UID, BUILD_GID)
