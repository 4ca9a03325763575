"""`paas engine ...` through the real entry point, on a temp PAAS_HOME."""

from __future__ import annotations

import io
import json
import os
import sys
import uuid
from pathlib import Path

import pytest
from testkit import engine_cli as paas

from paas.config import Settings
from paas.engine import layers
from paas.engine.containers import ContainerSpec
from paas.engine.engine import Engine
from paas.engine.images import Image
from paas.store import Store


def child(engine: Engine, tmp_path: Path, ref: str | None = None) -> Image:
    src = tmp_path / uuid.uuid4().hex
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(100_000))
    layers.tar_directory(src, src.with_suffix(".tar"))
    base = engine.images.get("busybox")
    image = engine.images.commit(base, src.with_suffix(".tar"), base.config, f"ADD {src.name}")
    if ref:
        engine.images.tag(image, ref)
    return image


def container(engine: Engine, image: Image, name: str) -> str:
    lowerdirs = tuple(str(p) for p in engine.images.lowerdirs(image))
    spec = ContainerSpec(name=name, lowerdirs=lowerdirs, argv=("true",), image=image.id, network="none")
    return engine.runtime.create(spec).id


def test_images_tag_inspect_history(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    busybox = engine.images.get("busybox")
    assert paas(capsys, "tag", "busybox", "localhost/tools:1")[0] == 0
    code, out, _ = paas(capsys, "images")
    header, *rows = out.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert [row.split()[:3] for row in rows] == [
        ["busybox", "latest", busybox.short_id], ["localhost/tools", "1", busybox.short_id]]
    assert rows[0].endswith("2.13MB")
    assert paas(capsys, "images", "-q")[1] == f"{busybox.short_id}\n"
    assert len(paas(capsys, "images", "localhost/tools")[1].splitlines()) == 2
    code, out, _ = paas(capsys, "inspect", "localhost/tools:1")
    [doc] = json.loads(out)
    assert doc["Id"] == busybox.id and doc["RepoTags"] == ["busybox:latest", "localhost/tools:1"]
    assert doc["RootFS"] == {"Type": "layers", "Layers": list(busybox.diff_ids)}
    assert doc["Config"]["Cmd"] == ["sh"] and doc["Size"] > 2_000_000
    code, out, _ = paas(capsys, "history", "busybox")
    assert out.splitlines()[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert out.splitlines()[1].startswith(busybox.short_id)
    code, _, err = paas(capsys, "inspect", "nope")
    assert code == 1 and "no image 'nope'" in err


def test_rmi_and_prune_keep_what_containers_and_releases_use(
    engine: Engine, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    released = child(engine, tmp_path)  # untagged, but an app's release
    store = Store(settings.db_path)
    store.create_app("web")
    store.add_release("web", released.id, {"web": "sh"}, "abc1234", "deploy")
    used = child(engine, tmp_path, "used:1")
    unused = child(engine, tmp_path, "unused:1")
    container(engine, used, "worker")

    code, _, err = paas(capsys, "rmi", "used:1")
    assert code == 1 and "must force" in err and engine.images.has("used:1")
    code, out, _ = paas(capsys, "prune", "-a", "--dry-run")
    assert code == 0 and f"would delete: {unused.id}" in out
    assert engine.images.has(unused.id)
    code, out, _ = paas(capsys, "prune", "-a", "-f")
    assert code == 0 and f"deleted: {unused.id}" in out and "Total reclaimed space" in out
    assert {i.id for i in engine.images.list()} == {released.id, used.id}
    assert not engine.images.content.has(unused.layers[-1])

    code, out, _ = paas(capsys, "rmi", "-f", "used:1")
    assert code == 0 and out.splitlines() == ["Untagged: used:1", f"Deleted: {used.id}"]
    # the stopped container keeps its snapshots
    assert all(engine.images.snapshots.exists(c) for c in used.chain_ids)
    code, _, err = paas(capsys, "rmi", released.id)
    assert code == 1 and "cannot be forced" in err


def test_prune_asks_first(engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    image = child(engine, tmp_path, "x:1")
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    code, _, err = paas(capsys, "prune", "-a")
    assert code == 1 and "aborted" in err and engine.images.has(image.id)


def test_save_and_load(engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    image = child(engine, tmp_path, "app:2")
    out_tar = tmp_path / "app.tar"
    assert paas(capsys, "save", "-o", str(out_tar), "app:2", "busybox")[0] == 0
    assert paas(capsys, "rmi", "app:2", "busybox")[0] == 0
    assert paas(capsys, "prune", "-f")[0] == 0
    assert engine.images.list() == []
    code, out, _ = paas(capsys, "load", "-i", str(out_tar))
    assert code == 0 and out.splitlines() == ["Loaded image: app:2", "Loaded image: busybox:latest"]
    assert engine.images.get("app:2").id == image.id
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(out_tar.read_bytes())))
    code, out, _ = paas(capsys, "load")
    assert code == 0 and "Loaded image: app:2" in out
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all")
    code, _, err = paas(capsys, "load", "-i", str(bad))
    assert code == 1 and "not a readable tar archive" in err


def test_commit(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    container(engine, engine.images.get("busybox"), "box")
    code, out, _ = paas(capsys, "commit", "-c", 'CMD ["echo", "hi"]', "-m", "note", "box", "boxed:1")
    assert code == 0
    image = engine.images.get("boxed:1")
    assert out.strip() == image.id and image.config.cmd == ("echo", "hi")
    code, _, err = paas(capsys, "commit", "ghost", "x:1")
    assert code == 1 and "no such container" in err
