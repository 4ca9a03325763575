"""The buildpack builder: Heroku's buildpack API (detect, compile, release) in builder containers.

Which buildpacks: the ones the app pins (BUILDPACK_URL or `.buildpacks`, see sources), else
the first shipped one, in the `buildpacks/order`, whose bin/detect passes. Each pinned one is
compiled in turn (multi-buildpack) and the last one's bin/release gives the default process
types; the Procfile's types win over them. The compiled /app becomes one layer on the stack
(see slug). When every input equals the last build's, its image is reused (see buildkey).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from paas.builders import buildkey, slug, sources
from paas.builders.base import BuildJob, BuildResult, NotDetectedError, read_procfile
from paas.builders.sources import Buildpack
from paas.builders.steps import DETECT_SCRIPT, Steps
from paas.engine.baseimages import STACK_REF
from paas.engine.images import Image
from paas.errors import BuildError, ImageNotFoundError

# What the shipped buildpacks look for, for the message when none of them applies.
HINTS = {"python": "a requirements.txt", "nodejs": "package.json", "static": "index.html",
         "procfile": "Procfile"}
# Changes whenever the builder's own scripts do: a build key of another version never matches.
BUILDER_VERSION = hashlib.sha256((DETECT_SCRIPT + slug.LAUNCHER_SCRIPT).encode()).hexdigest()[:16]


class BuildpackBuilder:
    name = "buildpack"
    absent = "no buildpack detected this app"

    def __init__(self, root: Path = sources.BUILDPACKS_DIR, stack: str = STACK_REF) -> None:
        self.root, self.stack_ref = root, stack

    def detect(self, source: Path) -> bool:
        # Whether some buildpack applies is for the buildpacks to say, in a container.
        return True

    def build(self, job: BuildJob) -> BuildResult:
        stack = self._stack(job)
        pinned = sources.pins(job.source, job.config)
        packs = self._resolve(job, pinned) if pinned else sources.shipped(self.root)
        cache = job.settings.cache_dir / job.app
        key = buildkey.build_key(
            source=buildkey.tree_digest(job.source),
            packs=[(str(p.path), buildkey.tree_digest(p.path, buildkey.SKIP_IN_PACKS)) for p in packs],
            config=job.config, stack=stack.id, selected=job.selected, builder=BUILDER_VERSION,
        )
        reused = _reuse(job, cache, key)
        if reused is not None:
            return reused
        steps = Steps(job, stack, cache)
        try:
            chosen = self._choose(steps, packs, pinned=bool(pinned))
            for pack in chosen:
                steps.compile(pack)
            processes = _discover(job, steps.release(chosen[-1]))
            names = [p.name for p in chosen]
            image = slug.commit(job, stack, names)
        finally:
            steps.close()
        buildkey.save(cache, buildkey.LastBuild(key, image.id, processes, tuple(names)))
        return BuildResult(image=image, processes=processes)

    def _stack(self, job: BuildJob) -> Image:
        try:
            return job.engine.images.get(self.stack_ref)
        except ImageNotFoundError:
            raise BuildError(
                f"the stack image {self.stack_ref} is missing: `paas up` builds it"
            ) from None

    def _resolve(self, job: BuildJob, pinned: list[str]) -> list[Buildpack]:
        clones = job.settings.cache_dir / sources.CLONES_DIR
        return [sources.resolve(p, root=self.root, clones=clones, forbidden=job.settings.home,
                                log=job.log) for p in pinned]

    def _choose(self, steps: Steps, packs: list[Buildpack], *, pinned: bool) -> list[Buildpack]:
        found = steps.detect(packs, every=pinned)
        log = steps.job.log
        if pinned:  # run as pinned whatever detect says; its name only makes the heading
            for hit in found:
                log(f"-----> {hit.name} app detected" if hit.passed and hit.name
                    else f"-----> Using buildpack {hit.pack.name}")
            return packs
        if not found:
            tried = ", ".join(p.name for p in packs)
            hints = [HINTS[p.name] for p in packs if p.name in HINTS]
            advice = f": add {', '.join(hints[:-1])} or {hints[-1]}" if len(hints) > 1 else ""
            raise NotDetectedError(f"no buildpack detected this app (tried: {tried}){advice}")
        hit = found[0]
        log(f"-----> {hit.name or hit.pack.name} app detected")
        return [hit.pack]


def _discover(job: BuildJob, defaults: dict[str, str]) -> dict[str, str]:
    """The process types: the buildpack's defaults, overridden by the Procfile's."""
    declared = read_procfile(job.source)
    job.log("-----> Discovering process types")
    if declared:
        job.log(f"       Procfile declares types -> {', '.join(declared)}")
    if defaults:
        job.log(f"       Default types for buildpack -> {', '.join(defaults)}")
    processes = {**defaults, **declared}
    if not processes:
        raise BuildError("no process types: add a Procfile with a 'web:' line")
    return processes


def _reuse(job: BuildJob, cache: Path, key: str) -> BuildResult | None:
    last = buildkey.load(cache)
    if last is None or last.key != key or not job.engine.images.has(last.image):
        return None
    job.log("-----> No changes since the last build; reusing its image")
    job.log(f"       Process types -> {', '.join(last.processes)}")
    return BuildResult(image=job.engine.images.get(last.image), processes=last.processes)
