"""How `paas engine` prints images: Docker's tables, sizes, ages and inspect JSON."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from paas.core.units import human_size
from paas.engine.images import Image, ImageStore

NONE = "<none>"
MISSING = "<missing>"
CREATED_BY_WIDTH = 45
COLUMN_GAP = 3
_FRACTION = re.compile(r"(\.\d{6})\d+")

Row = tuple[str, ...]


def time_ago(created: str, now: float | None = None) -> str:
    """Docker's ages (``2 hours ago``) for an RFC 3339 time; ``N/A`` when unreadable."""
    try:
        stamp = datetime.fromisoformat(_FRACTION.sub(r"\1", created)).timestamp()
    except ValueError:
        return "N/A"
    return f"{_duration((now or time.time()) - stamp)} ago"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return "1 second" if int(seconds) == 1 else f"{int(seconds)} seconds"
    minutes, hours = int(seconds // 60), int(seconds // 3600)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    if hours == 1:
        return "About an hour"
    for limit, divisor, unit in ((48, 1, "hours"), (24 * 14, 24, "days"),
                                 (24 * 60, 24 * 7, "weeks"), (24 * 730, 24 * 30, "months")):
        if hours < limit:
            return f"{hours // divisor} {unit}"
    return f"{hours // (24 * 365)} years"


def table(headers: Row, rows: Sequence[Row]) -> str:
    """Left-aligned columns with Docker's three-space gap; no trailing spaces."""
    widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(len(headers))]
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(width + COLUMN_GAP) for cell, width in zip(row, widths, strict=True)]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines)


def split_ref(ref: str) -> tuple[str, str]:
    """``name:tag`` → (repository, tag)."""
    name, _, tag = ref.rpartition(":")
    return name, tag


def image_rows(store: ImageStore, repository: str | None, show_all: bool, no_trunc: bool) -> list[Row]:
    """The rows of `images`: one per tag, and one per untagged image with ``show_all``."""
    refs_by_id: dict[str, list[str]] = {}
    for ref, image_id in store.tags().items():
        refs_by_id.setdefault(image_id, []).append(ref)
    rows: list[Row] = []
    for image in store.list():
        refs = refs_by_id.get(image.id, [])
        if repository is not None:
            refs = [r for r in refs if _matches(r, repository)]
            if not refs:
                continue
        image_id = image.id if no_trunc else image.short_id
        tail = (image_id, time_ago(image.created), human_size(store.size(image)))
        rows += [(*split_ref(ref), *tail) for ref in refs]
        if not refs and show_all:
            rows.append((NONE, NONE, *tail))
    return rows


def _matches(ref: str, wanted: str) -> bool:
    name, tag = split_ref(ref)
    if ":" not in wanted.rsplit("/", 1)[-1]:
        return name == wanted
    return (name, tag) == split_ref(wanted)


def inspect_doc(store: ImageStore, image: Image) -> dict[str, Any]:
    """What `docker image inspect` shows of an image."""
    last = image.history[-1] if image.history else None
    return {
        "Id": image.id,
        "RepoTags": store.refs(image),
        "RepoDigests": [],
        "Parent": "",
        "Comment": last.comment if last else "",
        "Created": image.created,
        "Config": image.config.to_oci(),
        "Architecture": image.architecture,
        "Os": image.os,
        "Size": store.size(image),
        "RootFS": {"Type": "layers", "Layers": list(image.diff_ids)},
        "Manifest": image.manifest_digest,
    }


def history_rows(store: ImageStore, image: Image, no_trunc: bool) -> list[Row]:
    """The rows of `history`: IMAGE CREATED CREATED-BY SIZE COMMENT, newest first.

    IMAGE names the stored image that ends at that step, if there is one (``<missing>`` else).
    """
    by_history = {(i.history, i.diff_ids): i for i in store.list()}
    rows: list[Row] = []
    layer = 0
    for step, entry in enumerate(image.history):
        size = 0
        if not entry.empty_layer and layer < len(image.layers):
            size = store.content.size(image.layers[layer])
            layer += 1
        match = by_history.get((image.history[: step + 1], image.diff_ids[:layer]))
        shown = MISSING if match is None else (match.id if no_trunc else match.short_id)
        created_by = entry.created_by
        if not no_trunc and len(created_by) > CREATED_BY_WIDTH:
            created_by = created_by[: CREATED_BY_WIDTH - 1] + "…"
        rows.append((shown, time_ago(entry.created), created_by, human_size(size), entry.comment))
    return rows[::-1]
