"""Fixtures of the end-to-end tests: the platform's base images, built once per session by the
code `paas up` runs, so each platform started here does not debootstrap Debian again."""

from __future__ import annotations

from pathlib import Path

import pytest

from paas.engine.baseimages import ensure_base_images
from paas.engine.images import ImageStore


@pytest.fixture(scope="session")
def base_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An engine root holding busybox and debian:bookworm: seed a PAAS_HOME with it
    (seed_engine) before scripts/up; never change it."""
    root = tmp_path_factory.mktemp("base-images") / "engine"
    ensure_base_images(ImageStore(root), print)
    return root

