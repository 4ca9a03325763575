"""The no-change path: a build's inputs as one key, and the image the last build with it made.

The key covers everything a buildpack build depends on: the source tree, the buildpacks'
contents, the app's config (ENV_DIR), the stack image and the selection. When a push brings
the same key as the app's last successful build, and that image is still stored, the build
is skipped. The record lives in the app's cache folder, outside the buildpacks' CACHE_DIR.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

RECORD_FILE = "last-build.json"
CHUNK = 1 << 20
SKIP_IN_PACKS = frozenset({".git"})


@dataclass(frozen=True, slots=True)
class LastBuild:
    key: str
    image: str  # the image id
    processes: dict[str, str]
    buildpacks: tuple[str, ...]


def tree_digest(root: Path, skip: frozenset[str] = frozenset()) -> str:
    """A digest of a folder's paths, kinds, modes, file contents and link targets.

    Owners and times do not count: an identical tree pushed again has the same digest.
    `skip` names top-level entries to leave out (a clone's .git).
    """
    hasher = hashlib.sha256()
    for rel, path, st in _entries(root, skip):
        hasher.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as handle:
                hasher.update(hashlib.file_digest(handle, "sha256").digest())
        elif stat.S_ISLNK(st.st_mode):
            hasher.update(os.readlink(path).encode(errors="surrogateescape"))
        hasher.update(b"\n")
    return hasher.hexdigest()


def _entries(root: Path, skip: frozenset[str]) -> Iterable[tuple[str, str, os.stat_result]]:
    stack = [("", str(root))]
    while stack:
        prefix, directory = stack.pop()
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if not prefix and entry.name in skip:
                continue
            rel = f"{prefix}{entry.name}"
            st = entry.stat(follow_symlinks=False)
            yield rel, entry.path, st
            if stat.S_ISDIR(st.st_mode):
                stack.append((f"{rel}/", entry.path))


def build_key(
    *, source: str, packs: Iterable[tuple[str, str]], config: Mapping[str, str],
    stack: str, selected: str, builder: str,
) -> str:
    """One digest of every input; `builder` versions the builder's own scripts."""
    doc = {
        "source": source,
        "buildpacks": [list(p) for p in packs],
        "config": sorted(config.items()),
        "stack": stack,
        "selected": selected,
        "builder": builder,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def load(app_cache: Path) -> LastBuild | None:
    try:
        doc = json.loads((app_cache / RECORD_FILE).read_text())
        return LastBuild(
            str(doc["key"]), str(doc["image"]),
            {str(k): str(v) for k, v in doc["processes"].items()},
            tuple(str(b) for b in doc["buildpacks"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no record, or one from another version: build


def save(app_cache: Path, last: LastBuild) -> None:
    """Write the record atomically (a crash leaves the old one or none, never half of one)."""
    app_cache.mkdir(parents=True, exist_ok=True)
    doc = {"key": last.key, "image": last.image, "processes": last.processes,
           "buildpacks": list(last.buildpacks)}
    fd, tmp = tempfile.mkstemp(dir=app_cache, prefix=".last-build-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle)
        os.replace(tmp, app_cache / RECORD_FILE)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def forget(app_cache: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (app_cache / RECORD_FILE).unlink()
