"""Build cache keys: what decides that a step may reuse the image an earlier build made.

A key is the sha256 of a canonical JSON document holding the parent image id, the config the
step starts from (ENV, WORKDIR, USER, SHELL...), the instruction after substitution and
whatever else the step reads: the ARG values in scope for RUN (they are in its environment),
the context checksum of COPY/ADD sources (path, mode, owner, size, content; never mtime), the
source image id of `--from`, the digest of a fetched URL. ARG values that a step does not read
stay out of its key, so a changed `--build-arg` misses from the first step that uses it, as in
Docker. Keys live in ImageStore's cache index (cache_put / cache_get).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from paas.engine.images import Image, ImageConfig

CACHE_VERSION = "paas-build-cache/1"


def step_key(
    parent: Image | None, config: ImageConfig, keyword: str, inputs: Mapping[str, Any]
) -> str:
    """The cache key of one step; `inputs` is the resolved instruction and what it reads."""
    doc = {
        "version": CACHE_VERSION,
        "parent": parent.id if parent is not None else "scratch",
        "config": config.to_oci(),
        "keyword": keyword,
        "inputs": inputs,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
