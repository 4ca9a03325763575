"""Fixtures of the builder tests: `stack_runner`, a private engine that runs containers of the
stack image (the session's `stack_engine`, used read-only through its lowerdirs); see
stackkit.StackRunner."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from buildkit import BuildpackFactory, make_pack
from stackkit import StackRunner
from testkit import scratch_engine

from paas.engine.baseimages import STACK_REF
from paas.engine.engine import Engine
from paas.engine.images import ImageStore


@pytest.fixture(scope="module")
def stack_runner(stack_engine: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackRunner]:
    """A StackRunner on a private engine (bridge and all removed after the module)."""
    images = ImageStore(stack_engine)
    lowerdirs = tuple(str(p) for p in images.lowerdirs(images.get(STACK_REF)))
    with scratch_engine(tmp_path_factory.mktemp("stack-runner"), with_busybox=False) as engine:
        engine.network.ensure_bridge()
        yield StackRunner(engine, lowerdirs)


# --- helper B: the buildpack builder and builder selection ---------------------------------


def stack_view(shared: Path, root: Path) -> None:
    """Make `root` an engine root holding the stack image of the shared (never changed) root
    in seconds less than a copy: its blobs hard-linked, its snapshots symlinked (the engine only
    reads them, as lowerdirs), and an index naming it. Images built on it stay in `root`."""
    source = ImageStore(shared)
    stack = source.get(STACK_REF)
    target = ImageStore(root)
    for digest in stack.blobs:
        os.link(source.content.path(digest), target.content.path(digest))
    for chain_id in stack.chain_ids:
        os.symlink(source.snapshots.path(chain_id).parent, target.snapshots.path(chain_id).parent)
    (root / "images.json").write_text(json.dumps(
        {"images": {stack.id: stack.manifest_digest}, "tags": {STACK_REF: stack.id}, "cache": {}}
    ))


@pytest.fixture(scope="module")
def engine_with_stack(
    stack_engine: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, str]]:
    """A private engine holding the stack (and busybox, for Dockerfile builds); its stack ref."""
    root = tmp_path_factory.mktemp("builder-engine") / "engine"
    stack_view(stack_engine, root)
    with scratch_engine(root) as engine:
        yield engine, STACK_REF


@pytest.fixture
def packs(tmp_path: Path) -> BuildpackFactory:
    """`packs(folder, detect_file=..., ...)`: a test buildpack in a fresh buildpacks root (its
    `order` lists them as they are made); `.parent` of one is that root."""
    root = tmp_path / "buildpacks"
    root.mkdir()
    (root / "order").write_text("")

    def factory(folder: str, /, **kwargs: Any) -> Path:
        path = make_pack(root / folder, **kwargs)
        with open(root / "order", "a") as order:
            order.write(f"{folder}\n")
        return path

    return factory
