"""The release image of a buildpack build: the stack plus ONE layer holding the compiled /app.

The layer also holds the launcher, Heroku's runtime contract as a script: it sources
/app/.profile.d/*.sh (and /app/.profile), then runs the process command through /bin/sh -c,
so `$PORT` expands. The image's ENTRYPOINT is the launcher and it carries the label
LAUNCHER_LABEL: the scheduler passes a Procfile command to it as ONE argument.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from paas.builders.base import BuildJob
from paas.builders.steps import APP_DIR, BUILD_USER
from paas.engine.images import Image
from paas.engine.layers import tar_directory

LAUNCHER_LABEL = "paas.launcher"
BUILDPACK_LABEL = "paas.buildpacks"
LAUNCHER_DIR = ".paas"
LAUNCHER_NAME = "launch"
LAUNCHER_PATH = f"{APP_DIR}/{LAUNCHER_DIR}/{LAUNCHER_NAME}"
# One argument: a command line for /bin/sh -c (the Procfile's). Several: an argv, run as is.
# None: an interactive shell (`run APP` without a command).
LAUNCHER_SCRIPT = """#!/bin/sh
# paas launcher: Heroku's runtime contract for buildpack apps.
cd /app || exit 1
export HOME=/app
for profile in /app/.profile.d/*.sh; do
  if [ -r "$profile" ]; then . "$profile"; fi
done
if [ -r /app/.profile ]; then . /app/.profile; fi
case $# in
  0) exec /bin/sh ;;
  1) exec /bin/sh -c "$1" ;;
  *) exec "$@" ;;
esac
"""


def add_launcher(source: Path) -> None:
    """Write the launcher into the compiled tree (replacing whatever the app had there)."""
    folder = source / LAUNCHER_DIR
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        folder.unlink()
    folder.mkdir(mode=0o755, exist_ok=True)
    path = folder / LAUNCHER_NAME
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755)
    with os.fdopen(fd, "w") as handle:
        handle.write(LAUNCHER_SCRIPT)
    os.chmod(path, 0o755)


def commit(job: BuildJob, stack: Image, buildpacks: list[str]) -> Image:
    """The release image: the stack plus the compiled source as one layer at /app."""
    add_launcher(job.source)
    images = job.engine.images
    config = stack.config.replace(
        env=stack.config.with_env("HOME", APP_DIR).env,
        entrypoint=(LAUNCHER_PATH,),
        cmd=None,
        working_dir=APP_DIR,
        user=BUILD_USER,
        labels={**stack.config.labels, LAUNCHER_LABEL: "1", BUILDPACK_LABEL: ",".join(buildpacks)},
    )
    job.log("-----> Committing the app layer")
    with tempfile.TemporaryDirectory(prefix="paas-slug-", dir=images.scratch) as scratch:
        layer = Path(scratch) / "app.tar"
        tar_directory(job.source, layer, prefix=APP_DIR)
        image = images.commit(stack, layer, config, f"buildpack {', '.join(buildpacks)}: {job.app}")
        job.log(f"       Done: {layer.stat().st_size / 1e6:.1f} MB, one layer on the stack")
    return image
