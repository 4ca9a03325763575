"""Builder selection: builder:set, a Dockerfile, pinned buildpacks (BUILDPACK_URL, .buildpacks),
the buildpack order, and what a user reads when nothing applies. Builds run for real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from buildkit import BuildFunction, BuildpackFactory, Built, Harness, make_pack, write_tree

from paas.builders import sources
from paas.builders.base import Builder, BuildJob
from paas.builders.buildpack import BuildpackBuilder
from paas.builders.dockerfile import DockerfileBuilder
from paas.builders.registry import build
from paas.builders.steps import Steps
from paas.engine.engine import Engine
from paas.errors import BuildError

DOCKERFILE = 'FROM busybox\nCMD ["httpd", "-f", "-p", "5000"]\n'


@pytest.fixture
def harness(engine_with_stack: tuple[Engine, str], tmp_path: Path) -> Iterator[Harness]:
    engine, stack = engine_with_stack
    yield Harness(engine, stack, tmp_path)


def _family(harness: Harness, packs_root: Path) -> BuildFunction:
    """The registry's build over the real builders, with test buildpacks and stack."""
    builders: list[Builder] = [DockerfileBuilder(), BuildpackBuilder(packs_root, stack=harness.stack)]
    return lambda job: build(job, builders)


def _build(harness: Harness, packs_root: Path, files: dict[str, str], selected: str = "") -> Built:
    return harness.build(_family(harness, packs_root), files, selected=selected)


def test_a_dockerfile_selects_the_dockerfile_builder(harness: Harness, packs: BuildpackFactory) -> None:
    pack = packs("any", detect_file="Dockerfile")
    built = _build(harness, pack.parent, {"Dockerfile": DOCKERFILE})
    assert "-----> Building with Dockerfile" in built.log
    assert built.result.processes == {"web": ""}
    assert not any("app detected" in line for line in built.log)


def test_builder_set_overrides_detection(harness: Harness, packs: BuildpackFactory) -> None:
    pack = packs("any", detect_file="Dockerfile", name="Anything", web="true")
    built = _build(harness, pack.parent, {"Dockerfile": DOCKERFILE}, selected="buildpack")
    assert "-----> Anything app detected" in built.log
    assert not any("Building with Dockerfile" in line for line in built.log)

    with pytest.raises(BuildError, match="dockerfile builder is selected, but the app has no Dockerfile"):
        _build(harness, pack.parent, {"Procfile": "web: true\n"}, selected="dockerfile")
    with pytest.raises(BuildError, match=r"unknown builder 'herokuish'.*dockerfile, buildpack"):
        _build(harness, pack.parent, {"Procfile": "web: true\n"}, selected="herokuish")


def test_the_first_buildpack_in_order_that_detects_wins(harness: Harness, packs: BuildpackFactory) -> None:
    packs("first", detect_file="nope.txt", name="First", web="first")
    packs("second", detect_file="app.txt", name="Second", web="second")
    third = packs("third", detect_file="app.txt", name="Third", web="third")
    built = _build(harness, third.parent, {"app.txt": ""})
    assert "-----> Second app detected" in built.log
    assert built.result.processes == {"web": "second"}
    (third.parent / "order").write_text("# the order file takes comments\nthird\nsecond\n")
    built = _build(harness, third.parent, {"app.txt": "changed"})
    assert built.result.processes == {"web": "third"}


def test_nothing_detected_lists_what_was_looked_for(harness: Harness, packs: BuildpackFactory) -> None:
    packs("alpha", detect_file="alpha.txt")
    pack = packs("beta", detect_file="beta.txt")
    with pytest.raises(
        BuildError, match=r"^no Dockerfile, and no buildpack detected this app \(tried: alpha, beta\)$"
    ):
        _build(harness, pack.parent, {"README": "hi"})
    with pytest.raises(BuildError, match="the pushed tree is empty"):
        _build(harness, pack.parent, {})


def test_the_shipped_buildpacks_hint_at_what_to_add(harness: Harness) -> None:
    names = [p.name for p in sources.shipped()]
    assert names[:4] == ["python", "nodejs", "static", "procfile"]
    with pytest.raises(BuildError) as caught:
        _build(harness, sources.BUILDPACKS_DIR, {"README": "hi"})
    assert str(caught.value) == (
        "no Dockerfile, and no buildpack detected this app (tried: python, nodejs, static, "
        "procfile): add a requirements.txt, package.json, index.html or Procfile"
    )


def test_pins_come_from_buildpack_url_or_the_dotbuildpacks_file(tmp_path: Path) -> None:
    assert sources.pins(tmp_path, {}) == []
    (tmp_path / ".buildpacks").write_text("# comment\n\n https://example.com/a.git#v1 \n/opt/b\n")
    assert sources.pins(tmp_path, {}) == ["https://example.com/a.git#v1", "/opt/b"]
    assert sources.pins(tmp_path, {"BUILDPACK_URL": " python "}) == ["python"]
    assert sources.pins(tmp_path, {"BUILDPACK_URL": ""}) == ["https://example.com/a.git#v1", "/opt/b"]


def test_resolving_pins(tmp_path: Path) -> None:
    root, home = tmp_path / "shipped", tmp_path / "home"
    make_pack(root / "mine", detect_file="x")
    make_pack(home / "cache" / "evil", detect_file="x")
    outside = make_pack(tmp_path / "outside", detect_file="x")
    kwargs = {"root": root, "clones": home / "cache" / ".buildpacks", "forbidden": home}
    assert sources.resolve("mine", **kwargs) == sources.Buildpack("mine", root / "mine")
    assert sources.resolve("heroku/mine", **kwargs) == sources.Buildpack("mine", root / "mine")
    assert sources.resolve(str(outside), **kwargs) == sources.Buildpack("outside", outside)
    for missing in ("missing", "heroku/missing"):
        with pytest.raises(BuildError, match="no bin/compile"):
            sources.resolve(missing, **kwargs)
    for bad in ("relative/path", "..", "./mine", "heroku/..", "heroku/a/b"):
        with pytest.raises(BuildError, match="use the name of a shipped buildpack"):
            sources.resolve(bad, **kwargs)
    for inside in (str(home / "cache" / "evil"), f"file://{home}/cache/evil"):
        with pytest.raises(BuildError, match="inside the platform's home are not allowed"):
            sources.resolve(inside, **kwargs)
    with pytest.raises(BuildError, match="cannot fetch buildpack"):
        sources.resolve(f"file://{tmp_path}/no-such-repo.git", **kwargs)


def test_the_shipped_buildpacks_detect_their_apps(harness: Harness) -> None:
    cases = {
        ("requirements.txt",): "Python", ("pyproject.toml", "index.html"): "Python",
        ("package.json", "index.html"): "Node.js", ("index.html",): "Static HTML",
        ("public/site.css",): "Static HTML", (".static", "Procfile"): "Static HTML",
        ("Procfile", "index.html"): "Procfile",
    }
    stack = harness.engine.images.get(harness.stack)
    for number, (files, expected) in enumerate(cases.items()):
        source = write_tree(harness.tmp / f"detect-{number}", dict.fromkeys(files, ""))
        job = BuildJob("demo", source, harness.engine, harness.settings(), print)
        steps = Steps(job, stack, harness.tmp / "app-cache")
        try:
            found = steps.detect(sources.shipped(), every=False)
        finally:
            steps.close()
        assert [hit.name for hit in found] == [expected], files
