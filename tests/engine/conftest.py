"""Fixtures of the engine tests: a store holding busybox, built once per session and copied,
and an engine on a copy of it with its own bridge and subnet."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import scratch_engine

from paas.engine.baseimages import build_busybox
from paas.engine.engine import Engine
from paas.engine.images import ImageStore


@pytest.fixture(scope="session")
def busybox_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An engine root whose image store holds only busybox; copy it, never change it."""
    root = tmp_path_factory.mktemp("busybox") / "engine"
    build_busybox(ImageStore(root), lambda line: None)
    return root


@pytest.fixture
def busybox_images(tmp_path: Path, busybox_root: Path) -> ImageStore:
    shutil.copytree(busybox_root, tmp_path / "engine", symlinks=True)
    return ImageStore(tmp_path / "engine")


@pytest.fixture
def busybox_engine(tmp_path: Path, busybox_root: Path) -> Iterator[Engine]:
    shutil.copytree(busybox_root, tmp_path / "engine", symlinks=True)
    with scratch_engine(tmp_path / "engine") as engine:
        yield engine
