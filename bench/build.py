"""Dockerfile build times: ours (CLI and Python API) vs ``buildah bud --layers``, side by side.

A 4-step Dockerfile (RUN, ENV, COPY, CMD after FROM) on the same base in both stores.
Each side has its own copy of the context (identical but for a random nonce in the RUN
line, which is what makes its first build cold) and each round runs, per side:

  cold      the first build of a Dockerfile neither cache has seen (every step runs)
  no change the same context again (every step should hit the cache)
  1 file    one copied file rewritten with new content (COPY and CMD rebuild)

Rounds alternate the sides, so both see the same machine state; one untimed warm-up
round comes first. Run: ``.venv/bin/python bench/build.py [--quick]``.
"""

from __future__ import annotations

import argparse
import inspect
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import benchlib as b

from paas.engine.dockerfile.builder import build_dockerfile
from paas.engine.images import Image

BASE_TAG = "localhost/pbench-base:bookworm"
# crun cannot start containers on this host's hybrid cgroup setup ("cgroups in hybrid mode
# not supported"), so buildah runs RUN steps with chroot isolation.
BUILDAH_FLAGS = ("--layers", "--pull=never", "--isolation", "chroot")
CASES = ("cold", "no change", "1 file changed")
ISSUE_BUILDAH_MS = {"cold": 618.0, "no change": 172.0, "1 file changed": 209.0}
CLI_TARGET = 1.0
API_TARGET = {"no change": 0.5, "1 file changed": 0.5}
DOCKERFILE = """FROM {base}
RUN mkdir -p /app/data && echo {nonce} > /etc/bench-build
ENV APP_ENV=bench APP_HOME=/app
COPY app/ /app/
CMD ["python3", "/app/main.py"]
"""
APP_FILES = {
    "app/main.py": "import util\n\nprint(util.greeting({version!r}))\n",
    "app/util.py": "def greeting(version):\n    return 'hello from ' + version\n",
    "app/requirements.txt": "flask==3.0.3\ngunicorn==22.0.0\n",
    "app/static/style.css": "body { font-family: sans-serif; }\n" * 20,
}


@dataclass
class Side:
    """One way of building: a name, a build function (context dir, tag) and its samples."""

    name: str
    build: Callable[[Path, str], None]
    image_id: Callable[[str], str]  # the id a tag points at (asked outside the timing)
    samples: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CASES})
    misses: list[str] = field(default_factory=list)


def write_context(ctx: Path, nonce: str, version: str) -> None:
    (ctx / "Dockerfile").parent.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=BASE_TAG, nonce=nonce))
    for name, text in APP_FILES.items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text.replace("{version!r}", repr(version)))


def one_round(side: Side, ctx: Path, timed: bool) -> None:
    """cold, no change, 1 file changed, each timed; checks the no-change build hit the cache."""
    write_context(ctx, secrets.token_hex(8), secrets.token_hex(8))
    tag = f"localhost/pbench-{side.name.replace(' ', '-').lower()}:latest"
    ids: dict[str, str] = {}
    for case in CASES:
        if case == "1 file changed":
            new = APP_FILES["app/main.py"].replace("{version!r}", repr(secrets.token_hex(8)))
            (ctx / "app/main.py").write_text(new)
        samples: list[float] = []
        with b.stopwatch(samples):
            side.build(ctx, tag)
        ids[case] = side.image_id(tag)
        if timed:
            side.samples[case].extend(samples)
    if ids["cold"] != ids["no change"]:
        side.misses.append("a no-change rebuild made a new image (cache miss)")


def ours_cli(ours: b.Ours, verbose: bool) -> Side:
    def build(ctx: Path, tag: str) -> None:
        b.run([str(b.PAAS), "engine", "build", "-t", tag, str(ctx)], env=ours.cli_env(), verbose=verbose)
    return Side("ours CLI", build, lambda tag: ours.images.get(tag).id)


def ours_api(ours: b.Ours, verbose: bool) -> Side:
    takes_tag = "tag" in inspect.signature(build_dockerfile).parameters

    def build(ctx: Path, tag: str) -> None:
        log: list[str] = []
        try:
            if takes_tag:
                image: Image = build_dockerfile(ours.images, ours.engine.runtime, ctx, log.append, tag=tag)
            else:
                image = build_dockerfile(ours.images, ours.engine.runtime, ctx, log.append)
                ours.images.tag(image, tag)
        finally:
            if verbose:
                sys.stderr.write("\n".join(log) + "\n")
    return Side("ours API", build, lambda tag: ours.images.get(tag).id)


def buildah(storage: b.Storage, verbose: bool) -> Side:
    def build(ctx: Path, tag: str) -> None:
        b.run(storage.buildah("bud", *BUILDAH_FLAGS, "-t", tag, str(ctx)), verbose=verbose)

    def image_id(tag: str) -> str:
        return b.run(storage.buildah("images", "-q", "--no-trunc", tag)).stdout.strip()
    return Side("buildah", build, image_id)


def prepare(ws: b.Workspace, args: argparse.Namespace) -> tuple[b.Ours, b.Storage]:
    """Our engine with the base tagged BASE_TAG, and the same image in a containers-storage."""
    ours = b.open_ours(ws)
    base = b.ensure_base(ours.images, args.base, args.base_cache)
    ours.images.tag(base, BASE_TAG)
    layout = b.export_oci_layout(ours.images, base, ws.root / "base-oci", "bookworm")
    storage = b.open_storage(ws)
    b.run(["skopeo", "copy", "--quiet", "--insecure-policy", f"oci:{layout}:bookworm",
           storage.transport(BASE_TAG)])
    return ours, storage


def report(sides: list[Side], base: str, runs: int, cli_startup: float | None) -> None:
    by_name = {s.name: s for s in sides}
    ref = by_name["buildah"]
    header = ["case", "buildah bud --layers", "ours: paas engine build (CLI)", "CLI / buildah",
              "ours: build_dockerfile (API)", "API / buildah", "buildah (issue ref.)"]
    rows = []
    for case in CASES:
        r = b.median(ref.samples[case])
        cli = b.median(by_name["ours CLI"].samples[case]) if "ours CLI" in by_name else None
        api = b.median(by_name["ours API"].samples[case])
        cli_ratio = None if cli is None or not r else cli / r
        api_ratio = None if api is None or not r else api / r
        rows.append([case, b.fmt_ms(r),
                     b.fmt_ms(cli), f"{b.fmt_ratio(cli, r)} {b.verdict(cli_ratio, CLI_TARGET)}",
                     b.fmt_ms(api), f"{b.fmt_ratio(api, r)} {b.verdict(api_ratio, API_TARGET.get(case))}",
                     b.fmt_ms(ISSUE_BUILDAH_MS[case])])
    notes = [
        f"medians of {runs} runs after 1 warm-up round; base: {base_name(base)}, in both stores",
        "Dockerfile: FROM base; RUN mkdir+echo; ENV; COPY app/ (4 files); CMD",
        "cold: the RUN line carries a fresh random nonce, so neither cache has any step; "
        "no change: same context again; 1 file changed: app/main.py gets new content",
        f"buildah bud {' '.join(BUILDAH_FLAGS)}, with its own --root/--runroot under the bench's "
        "temp dir (overlay driver); crun fails on this host's hybrid cgroups, hence chroot isolation",
        f"CLI start-up alone (paas engine --help): {b.fmt_ms(cli_startup)}",
    ]
    if "ours CLI" not in by_name:
        notes.append("`paas engine build` is not there yet: the CLI column is not measured")
    notes += [f"{s.name}: {m}" for s in sides for m in sorted(set(s.misses))]
    b.print_table(f"Dockerfile build ({base_name(base)} base)", header, rows, notes)


def base_name(base: str) -> str:
    return "debian:bookworm (debootstrap minbase + python3)" if base == "debian" else "busybox"


def cli_startup_ms(runs: int) -> float | None:
    samples: list[float] = []
    for _ in range(runs):
        with b.stopwatch(samples):
            b.run([str(b.PAAS), "engine", "--help"])
    return b.median(samples)


def main() -> None:
    args = b.arguments(__doc__.splitlines()[0])
    with b.workspace("build") as ws:
        ours, storage = prepare(ws, args)
        sides = [buildah(storage, args.verbose), ours_api(ours, args.verbose)]
        if b.cli_verb_exists("build"):
            sides.insert(1, ours_cli(ours, args.verbose))
        for n in range(args.runs + 1):
            b.say(f"round {n}/{args.runs}" + (" (warm-up)" if n == 0 else ""))
            for side in sides:
                one_round(side, ws.root / "ctx" / side.name.replace(" ", "-"), timed=n > 0)
        report(sides, args.base, args.runs, cli_startup_ms(args.runs))


if __name__ == "__main__":
    main()
