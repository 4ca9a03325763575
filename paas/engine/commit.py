"""``commit``: a container's writable layer, as a new image on top of the image it was made from.

The container's overlay upperdir becomes one OCI diff layer (whiteouts and opaque dirs
converted by ``layers.tar_overlay_upper``); the config is the image's, with Dockerfile-style
``--change`` lines applied (``dockerfile.metadata.apply_changes``). A running container is
not paused: its upperdir is read as it is at that moment, so commit a stopped container for
a consistent snapshot.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from paas.engine import layers
from paas.engine.containers import Container
from paas.engine.dockerfile.metadata import apply_changes
from paas.engine.images import MIN_ID_PREFIX, Image, ImageStore
from paas.engine.runtime import Runtime
from paas.errors import ContainerError, ImageNotFoundError


def find_container(runtime: Runtime, name_or_id: str) -> Container:
    """A container by full id, unique id prefix, or name; ContainerError if none or several."""
    containers = runtime.list()
    exact = [c for c in containers if name_or_id in (c.id, c.name)]
    if len(exact) == 1:
        return exact[0]
    prefixed = [c for c in containers if c.id.startswith(name_or_id)]
    if not exact and len(name_or_id) >= MIN_ID_PREFIX and len(prefixed) == 1:
        return prefixed[0]
    if exact or len(prefixed) > 1:
        raise ContainerError(f"{name_or_id!r} names several containers; use the container id")
    raise ContainerError(f"no such container: {name_or_id}")


def commit_container(
    images: ImageStore,
    runtime: Runtime,
    container: str,
    *,
    ref: str | None = None,
    changes: Sequence[str] = (),
    message: str = "",
) -> Image:
    """A new image: the container's image plus its writable layer; tagged ``ref`` if given."""
    found = find_container(runtime, container)
    if not found.spec.image:
        raise ContainerError(f"container {found.name} records no image to commit on top of")
    try:
        parent = images.get(found.spec.image)
    except ImageNotFoundError:
        raise ImageNotFoundError(
            f"container {found.name}: its image {found.spec.image} is no longer in the store"
        ) from None
    config = apply_changes(parent.config, changes)
    upper = runtime.store.dir(found.id) / "upper"
    with tempfile.TemporaryDirectory(dir=images.scratch, prefix="commit-") as tmp:
        layer = Path(tmp) / "layer.tar"
        layers.tar_overlay_upper(upper, layer)
        image = images.commit(parent, layer, config, " ".join(found.spec.argv), comment=message)
    if ref is not None:
        images.tag(image, ref)
    return image
