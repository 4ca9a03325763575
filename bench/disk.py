"""Disk used by 20 images that share the base and differ in one small layer: ours vs containers-storage.

Each image is ``FROM base`` + ``COPY id.txt /etc/bench-id`` (a different 1 kB file per
image), built through ``build_dockerfile`` (``--method commit``: ``ImageStore.commit`` of the
same layer, no builder). The reference is the same 20 builds by ``buildah bud`` into a
containers-storage of its own. Disk is measured before (base only) and after, as allocated
blocks of every file and directory under the store, each hardlinked inode counted once.

Target (issue 3): after <= (before + 20 small layers) x 1.05, where a small layer is the
size of the layer tar. Run: ``.venv/bin/python bench/disk.py``.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import benchlib as b

from paas.engine.dockerfile.builder import build_dockerfile
from paas.engine.images import Image

IMAGES = 20
BASE_TAG = "localhost/pbench-base:bookworm"
TARGET = 1.05
DOCKERFILE = f"FROM {BASE_TAG}\nCOPY id.txt /etc/bench-id\n"


@dataclass(frozen=True, slots=True)
class Usage:
    allocated: int  # bytes in allocated blocks
    apparent: int  # bytes of file contents


def disk_usage(paths: Iterable[Path]) -> Usage:
    """Like ``du -s`` over all paths together: each inode once, directories included."""
    seen: set[tuple[int, int]] = set()
    allocated = apparent = 0
    for top in paths:
        for dirpath, dirnames, filenames in os.walk(top):
            for name in (".", *dirnames, *filenames):
                st = os.lstat(os.path.join(dirpath, name))
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                allocated += st.st_blocks * 512
                apparent += st.st_size
    return Usage(allocated, apparent)


def write_context(ctx: Path, n: int) -> None:
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "id.txt").write_text(f"image {n:02d} {secrets.token_hex(494)}\n")  # 1,000 bytes


def ours_images(ours: b.Ours, ws: b.Workspace, method: str) -> list[Image]:
    made = []
    for n in range(IMAGES):
        ctx = ws.root / "ctx" / f"{n:02d}"
        write_context(ctx, n)
        if method == "build":
            made.append(build_dockerfile(ours.images, ours.engine.runtime, ctx, lambda line: None))
        else:
            made.append(commit_one(ours, ctx, ws))
    return made


def commit_one(ours: b.Ours, ctx: Path, ws: b.Workspace) -> Image:
    from paas.engine.layers import tar_directory

    tree = ws.root / "tree"
    (tree / "etc").mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "bench-id").write_bytes((ctx / "id.txt").read_bytes())
    layer = ws.root / "layer.tar"
    tar_directory(tree, layer)
    base = ours.images.get(BASE_TAG)
    return ours.images.commit(base, layer, base.config, "COPY id.txt /etc/bench-id")


def measure(before: Callable[[], Usage], make: Callable[[], None]) -> tuple[Usage, Usage]:
    first = before()
    make()
    return first, before()


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=("build", "commit"), default="build",
                        help="make our 20 images by Dockerfile builds or by ImageStore.commit")
    parser.add_argument("--no-reference", action="store_true", help="skip the buildah run")


def row(name: str, before: Usage, after: Usage, small: int, base_bytes: int) -> list[str]:
    expected = before.allocated + IMAGES * small
    ratio = after.allocated / expected
    logical = after.allocated / (base_bytes + IMAGES * small)
    return [name, mb(before.allocated), mb(after.allocated), mb(after.allocated - before.allocated),
            kb((after.allocated - before.allocated) / IMAGES), mb(expected),
            f"{ratio:.4f} {'ok' if ratio <= TARGET else 'MISSED'} (<= {TARGET})", f"{logical:.2f}x"]


def mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


def kb(n: float) -> str:
    return f"{n / 1e3:,.1f} kB"


def main() -> None:
    args = b.arguments(__doc__.splitlines()[0], extra_args)
    with b.workspace("disk") as ws:
        ours = b.open_ours(ws)
        base = b.ensure_base(ours.images, args.base, args.base_cache)
        ours.images.tag(base, BASE_TAG)
        store_dirs = [ours.images.content.root, ours.images.snapshots.root]

        def make() -> None:
            ours_images(ours, ws, args.method)

        ours_before, ours_after = measure(lambda: disk_usage(store_dirs), make)
        made = [i for i in ours.images.list() if i.id != base.id and len(i.layers) == len(base.layers) + 1]
        small = max(ours.images.content.size(i.layers[-1]) for i in made)
        base_bytes = sum(ours.images.content.size(d) for d in base.layers)
        rows = [row(f"ours ({args.method}), content + snapshots", ours_before, ours_after, small, base_bytes)]
        if not args.no_reference:
            rows.append(reference(ws, ours, base, (small, base_bytes), args.verbose))
        header = ["store", "before (base only)", f"after {IMAGES} images", "growth", "per image",
                  f"before + {IMAGES} small layers", "after / (before + layers)",
                  "after / (image bytes)"]
        notes = [
            f"base: {b.base_ref(args.base)}, layers {mb(base_bytes)} (uncompressed tars); "
            f"{len(made)} images made, each a {small:,} B layer tar (1,000 B file)",
            "disk = allocated blocks, hardlinks once; ours counts content/ + snapshots/ "
            "(each layer is kept twice: the tar blob and the unpacked snapshot)",
            "buildah: bud --layers --isolation chroot into its own --root (overlay driver); "
            "its store is the whole --root",
            f"image bytes = base layers + {IMAGES} small layers (what the images hold, uncompressed): "
            "the last column shows what each store costs beyond the bytes themselves",
        ]
        b.print_table(f"Disk for {IMAGES} images sharing the base", header, rows, notes)


def reference(ws: b.Workspace, ours: b.Ours, base: Image, sizes: tuple[int, int], verbose: bool
              ) -> list[str]:
    storage = b.open_storage(ws)
    layout = b.export_oci_layout(ours.images, base, ws.root / "base-oci", "bookworm")
    b.run(["skopeo", "copy", "--quiet", "--insecure-policy", f"oci:{layout}:bookworm",
           storage.transport(BASE_TAG)])

    def build_all() -> None:
        for n in range(IMAGES):
            ctx = ws.root / "ctx" / f"{n:02d}"
            b.run(storage.buildah("bud", "--layers", "--pull=never", "--isolation", "chroot",
                                  "-t", f"localhost/pbench-disk-{n:02d}", str(ctx)), verbose=verbose)

    before, after = measure(lambda: disk_usage([storage.root]), build_all)
    return row("buildah, containers-storage --root", before, after, *sizes)


if __name__ == "__main__":
    main()
