"""Push times to a docker-registry on loopback: ours (RegistryClient, and the CLI) vs ``skopeo copy``.

The image: busybox plus one layer holding a file of random bytes, ~95 MB in all (random
data, so gzip cannot shrink it: the bytes on the wire are about the same whether a tool
compresses or not), and, with the debian base, ``debian:bookworm`` itself (~166 MB
uncompressed). skopeo reads the very same blobs from an OCI layout dir whose files are
hardlinks into our content store.

Each round starts a fresh registry per side (so nothing is there yet), pushes once
(``push``), then pushes the same image to the same name again (``again``: every blob is
found present). Run: ``.venv/bin/python bench/push.py [--quick]``.

``bench/push.py app [--quick]`` is the other push: ``git push`` of a Flask app to serving, on a
whole platform (push_app.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import benchlib as b

from paas.engine.images import Image, ImageStore
from paas.engine.layers import tar_directory
from paas.engine.registry import RegistryClient, parse_reference

sys.path.insert(0, str(b.REPO / "tests"))
from registryd import start_registry  # noqa: E402

TARGET_MB = 95
CASES = ("push", "again")
ISSUE_SKOPEO_MS = {"push": 2000.0, "again": 30.0}
AGAIN_LIMIT_MS = 100.0
REPOSITORY = "bench/app"


@dataclass
class Side:
    """One way of pushing: push(local image ref, oci layout dir, registry host)."""

    name: str
    push: Callable[[str, Path, str], None]
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def random_image(store: ImageStore, base: Image, tmp: Path) -> Image:
    """base + one layer: a file of random bytes, sized so the image is ~TARGET_MB MB."""
    base_bytes = sum(store.content.size(d) for d in base.layers)
    data_dir = tmp / "data"
    (data_dir / "srv").mkdir(parents=True)
    with open(data_dir / "srv" / "blob.bin", "wb") as f:
        remaining = TARGET_MB * 1_000_000 - base_bytes - 10_240
        while remaining > 0:
            chunk = os.urandom(min(remaining, 1 << 20))
            f.write(chunk)
            remaining -= len(chunk)
    layer = tmp / "data.tar"
    tar_directory(data_dir, layer)
    image = store.commit(base, layer, base.config, "COPY blob.bin /srv/ (random bytes)")
    layer.unlink()
    return image


def image_mb(store: ImageStore, image: Image) -> float:
    return sum(store.content.size(d) for d in image.layers) / 1e6


def ours_api(store: ImageStore) -> Side:
    def push(local: str, layout: Path, host: str) -> None:
        with RegistryClient(insecure=True) as client:
            client.push(store, local, parse_reference(f"{host}/{REPOSITORY}:latest"), lambda line: None)
    return Side("ours API", push)


def ours_cli(ours: b.Ours, verbose: bool) -> Side:
    def push(local: str, layout: Path, host: str) -> None:
        b.run([str(b.PAAS), "engine", "push", "--insecure", local, f"{host}/{REPOSITORY}:latest"],
              env=ours.cli_env(), verbose=verbose)
    return Side("ours CLI", push)


def skopeo(verbose: bool) -> Side:
    def push(local: str, layout: Path, host: str) -> None:
        b.run(["skopeo", "copy", "--quiet", "--insecure-policy", "--dest-tls-verify=false",
               f"oci:{layout}:latest", f"docker://{host}/{REPOSITORY}:latest"], verbose=verbose)
    return Side("skopeo", push)


def one_round(side: Side, label: str, local: str, layout: Path, ws: b.Workspace, timed: bool) -> None:
    tmp = Path(tempfile.mkdtemp(dir=ws.root, prefix="registry-"))
    registry = start_registry(tmp)
    try:
        for case in CASES:
            samples: list[float] = []
            with b.stopwatch(samples):
                side.push(local, layout, registry.host)
            if timed:
                side.samples.setdefault(label, {c: [] for c in CASES})[case].extend(samples)
    finally:
        registry.stop()
        b.run(["rm", "-rf", str(tmp)])


def report(sides: list[Side], images: dict[str, float], runs: int) -> None:
    by_name = {s.name: s for s in sides}
    ref = by_name["skopeo"]
    header = ["image", "case", "skopeo copy", "ours: RegistryClient.push (API)", "API / skopeo",
              "ours: paas engine push (CLI)", "CLI / skopeo", "skopeo (issue ref.)"]
    rows = []
    for label in images:
        for case in CASES:
            r = b.median(ref.samples[label][case])
            api = b.median(by_name["ours API"].samples[label][case])
            cli = b.median(by_name["ours CLI"].samples[label][case]) if "ours CLI" in by_name else None
            rows.append([label, case, b.fmt_ms(r), *_cells(case, api, r), *_cells(case, cli, r),
                         b.fmt_ms(ISSUE_SKOPEO_MS[case])])
    notes = [
        f"medians of {runs} runs after 1 warm-up round; a fresh docker-registry (Debian package, "
        "filesystem storage) on 127.0.0.1 per side and round",
        "images: " + "; ".join(f"{k} = {v:.1f} MB of layers" for k, v in images.items()),
        "ours sends the layers as stored (uncompressed tar); skopeo gzips them on the way "
        "(its docker:// destination always compresses): same image, different wire format",
        "again: the same push once more; every blob is found present (HEAD), only the manifest is PUT",
        f"targets: push at most 1.0x skopeo; again under {AGAIN_LIMIT_MS:.0f} ms",
    ]
    if "ours CLI" not in by_name:
        notes.append("`paas engine push` is not there yet: the CLI column is not measured")
    b.print_table("Registry push", header, rows, notes)


def _cells(case: str, ours: float | None, ref: float | None) -> list[str]:
    ratio = f"{b.fmt_ratio(ours, ref)} {_verdict(case, ours, ref)}"
    return [b.fmt_ms(ours) + _again_verdict(case, ours), ratio]


def _verdict(case: str, ours: float | None, ref: float | None) -> str:
    if case != "push":
        return ""
    return b.verdict(None if ours is None or not ref else ours / ref, 1.0)


def _again_verdict(case: str, ours: float | None) -> str:
    if case != "again" or ours is None:
        return ""
    return f" {'ok' if ours < AGAIN_LIMIT_MS else 'MISSED'} (< {AGAIN_LIMIT_MS:.0f} ms)"


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only-random", action="store_true", help="skip pushing debian:bookworm itself")


def main() -> None:
    args = b.arguments(__doc__.splitlines()[0], extra_args)
    with b.workspace("push") as ws:
        ours = b.open_ours(ws)
        busybox = b.ensure_base(ours.images, "busybox", args.base_cache)
        made = random_image(ours.images, busybox, ws.root)
        ours.images.tag(made, "pbench-random:latest")
        images = {"busybox + random": ("pbench-random:latest", made)}
        if args.base == "debian" and not args.only_random:
            debian = b.ensure_base(ours.images, "debian", args.base_cache)
            images["debian:bookworm"] = ("debian:bookworm", debian)
        layouts = {label: b.export_oci_layout(ours.images, image, ws.root / f"oci-{n}", "latest")
                   for n, (label, (_, image)) in enumerate(images.items())}
        sides = [skopeo(args.verbose), ours_api(ours.images)]
        if b.cli_verb_exists("push"):
            sides.append(ours_cli(ours, args.verbose))
        for n in range(args.runs + 1):
            b.say(f"round {n}/{args.runs}" + (" (warm-up)" if n == 0 else ""))
            for label, (ref, _) in images.items():
                for side in sides:
                    one_round(side, label, ref, layouts[label], ws, timed=n > 0)
        sizes = {label: image_mb(ours.images, image) for label, (_, image) in images.items()}
        report(sides, sizes, args.runs)


if __name__ == "__main__":
    if sys.argv[1:2] == ["app"]:
        import push_app

        push_app.main(sys.argv[2:])
    else:
        main()
