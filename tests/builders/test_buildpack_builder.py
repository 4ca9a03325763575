"""The buildpack builder against real builder containers: Heroku's API as a buildpack sees it
(arguments, ENV_DIR, CACHE_DIR, the build user, exit codes, release YAML), pinned and multi
buildpacks (paths, file:// git URLs with #ref, .buildpacks), the release image (one layer on the
stack, the launcher) and the no-change path.

The buildpacks here are tiny sh scripts in a tmp dir; the stack is any image with /bin/sh (see
the `stack` fixture)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from buildkit import BuildpackFactory, Built, Harness, make_pack, run_image, write_tree
from testkit import http_get
from wheelhouse import pip_config, serve_wheels

from paas.builders import buildkey, sources
from paas.builders.buildpack import BuildpackBuilder
from paas.builders.slug import LAUNCHER_LABEL
from paas.engine.containers import ContainerSpec
from paas.engine.engine import Engine
from paas.errors import BuildError

ODD = {
    "SPACES": "a value with  spaces ",
    "QUOTES": "it's \"quoted\" `tick` $(not run)",
    "EQUALS": "k=v=w",
    "LINES": "line one\nline two\n",
    "UNICODE": "héllo wörld ✓",
}
RECORDING_COMPILE = """#!/bin/sh
set -e
echo "-----> compile args: $*"
echo "       user: $(id -u):$(id -g) home: $HOME cwd: $(pwd)"
for f in "$3"/*; do echo "       env file: $(basename "$f")"; done
echo run >> "$2/runs"
echo "       cache runs: $(wc -l < "$2/runs")"
cp "$3"/* "$1/" 2>/dev/null || true
touch "$1/compiled-by-me"
"""


@pytest.fixture
def harness(engine_with_stack: tuple[Engine, str], tmp_path: Path) -> Iterator[Harness]:
    engine, stack = engine_with_stack
    yield Harness(engine, stack, tmp_path)


def test_api_arguments_env_dir_cache_dir_and_build_user(
    harness: Harness, packs: BuildpackFactory
) -> None:
    pack = packs("tp", detect_file="tp.txt", name="TestPack", compile_sh=RECORDING_COMPILE,
                 web="echo web")
    builder = BuildpackBuilder(pack.parent, stack=harness.stack)
    first = harness.build(builder, {"tp.txt": "1"}, config=ODD)
    log = "\n".join(first.log)
    assert "-----> TestPack app detected" in first.log
    assert "-----> compile args: /app /cache /env" in first.log
    assert "       user: 1000:1000 home: /app cwd: /app" in first.log
    for key in ODD:
        assert f"       env file: {key}" in first.log
    assert "       cache runs: 1" in first.log
    # ENV_DIR values reached the buildpack byte for byte (it copied them into the app).
    for key, value in ODD.items():
        assert harness.read_file(first.result.image, f"/app/{key}") == value.encode()
    assert "compiled-by-me" in harness.list_app(first.result.image)
    assert log.index("detected") < log.index("compile args") < log.index("Discovering process types")

    second = harness.build(builder, {"tp.txt": "2"}, config=ODD)
    assert "       cache runs: 2" in second.log  # CACHE_DIR kept between builds of the app
    other = harness.build(builder, {"tp.txt": "2"}, config=ODD, app="other")
    assert "       cache runs: 1" in other.log  # ...and per app


def test_compile_output_streams_while_the_buildpack_runs(harness: Harness, packs: BuildpackFactory) -> None:
    # The compile waits for a file that the log sink creates when it sees READY: with output
    # buffered until the step ends, the file never appears and the buildpack says so.
    compile_sh = """#!/bin/sh
echo READY
i=0
while [ ! -e "$1/go" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
if [ -e "$1/go" ]; then echo "       streamed"; else echo "       NOT STREAMED"; fi
rm -f "$1/go"
"""
    pack = packs("wait", detect_file="app.txt", compile_sh=compile_sh, web="true")
    source = write_tree(harness.tmp / "src", {"app.txt": ""})

    def on_line(line: str) -> None:
        if line == "READY":
            (source / "go").touch()

    built = harness.build_dir(BuildpackBuilder(pack.parent, stack=harness.stack), source, on_line=on_line)
    assert "       streamed" in built.log


def test_build_containers_have_the_build_limits(harness: Harness, packs: BuildpackFactory) -> None:
    compile_sh = """#!/bin/sh
echo LIMITS
i=0
while [ ! -e "$1/go" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
"""
    pack = packs("lim", detect_file="app.txt", compile_sh=compile_sh, web="true")
    source = write_tree(harness.tmp / "src", {"app.txt": ""})
    seen: dict[str, str] = {}

    def on_line(line: str) -> None:
        if line == "LIMITS":
            (build,) = harness.engine.runtime.list({"paas.role": "build", "paas.app": "demo"})
            seen.update(harness.cgroup_limits(build.id))
            # ENV_DIR (the app's secrets) sits in a folder only root may enter.
            (scratch,) = (harness.settings().cache_dir / "demo").glob(".build-*")
            seen["scratch"] = oct(scratch.stat().st_mode & 0o777)
            (source / "go").touch()

    harness.build_dir(BuildpackBuilder(pack.parent, stack=harness.stack), source, on_line=on_line,
                      build_memory=256 << 20, build_cpus=0.5)
    assert seen == {"memory": str(256 << 20), "cpu": "50000", "scratch": "0o700"}
    assert not list((harness.settings().cache_dir / "demo").glob(".build-*"))


def test_a_failing_compile_fails_the_build_after_streaming_its_output(
    harness: Harness, packs: BuildpackFactory
) -> None:
    pack = packs("bad", detect_file="app.txt",
                 compile_sh="#!/bin/sh\necho '       about to fail'\necho 'oops' >&2\nexit 3\n")
    builder = BuildpackBuilder(pack.parent, stack=harness.stack)
    with pytest.raises(BuildError, match=r"the bad buildpack's compile failed \(exit 3\)"):
        harness.build(builder, {"app.txt": ""})
    assert "       about to fail" in harness.last_log
    assert "oops" in harness.last_log
    assert buildkey.load(harness.settings().cache_dir / "demo") is None
    assert not harness.engine.runtime.list({"paas.role": "build"})

    bad_release = packs("badrelease", detect_file="app.txt", release_sh="#!/bin/sh\nexit 4\n")
    with pytest.raises(BuildError, match=r"the badrelease buildpack's release failed \(exit 4\)"):
        harness.build(builder, {"app.txt": ""}, config={"BUILDPACK_URL": str(bad_release)})


def test_release_yaml_gives_default_types_and_the_procfile_wins(
    harness: Harness, packs: BuildpackFactory
) -> None:
    release = ("#!/bin/sh\ncat <<'EOF'\n---\naddons: []\ndefault_process_types:\n"
               "  web: serve --port $PORT\n  console: sh\nEOF\n")
    pack = packs("rel", detect_file="app.txt", release_sh=release)
    builder = BuildpackBuilder(pack.parent, stack=harness.stack)
    built = harness.build(builder, {"app.txt": ""})
    assert built.result.processes == {"web": "serve --port $PORT", "console": "sh"}
    assert "       Default types for buildpack -> web, console" in built.log

    built = harness.build(builder, {"app.txt": "", "Procfile": "web: mine\nworker: work\n"})
    assert built.result.processes == {"web": "mine", "console": "sh", "worker": "work"}
    assert "       Procfile declares types -> web, worker" in built.log

    bad = packs("badyaml", detect_file="app.txt",
                release_sh="#!/bin/sh\necho 'default_process_types: [unclosed'\n")
    with pytest.raises(BuildError, match="bad YAML"):
        harness.build(builder, {"app.txt": "x"}, config={"BUILDPACK_URL": str(bad)})


def test_release_image_is_the_stack_plus_one_layer_run_by_the_launcher(
    harness: Harness, packs: BuildpackFactory
) -> None:
    compile_sh = """#!/bin/sh
mkdir -p "$1/.profile.d"
echo 'export GREETING="hello from profile.d"' > "$1/.profile.d/greet.sh"
"""
    pack = packs("launch", detect_file="app.txt", compile_sh=compile_sh,
                 web='echo "$GREETING on $PORT as $(id -u) in $(pwd)"')
    built = harness.build(BuildpackBuilder(pack.parent, stack=harness.stack), {"app.txt": ""})
    image, stack = built.result.image, harness.engine.images.get(harness.stack)
    assert image.layers[:-1] == stack.layers and len(image.layers) == len(stack.layers) + 1
    assert image.config.labels[LAUNCHER_LABEL] == "1"
    assert image.config.entrypoint == ("/app/.paas/launch",) and image.config.cmd is None
    assert image.config.user == "1000:1000" and image.config.working_dir == "/app"
    # The scheduler's rule for launcher images: entrypoint + (command,).
    lines = run_image(harness.engine, image, built.result.processes["web"], env=("PORT=5123",))
    assert lines == ["hello from profile.d on 5123 as 1000 in /app"]
    assert run_image(harness.engine, image, "echo", "two words") == ["two words"]  # an argv


def test_no_change_reuses_the_image_and_any_input_change_rebuilds(
    harness: Harness, packs: BuildpackFactory
) -> None:
    pack = packs("re", detect_file="app.txt", compile_sh=RECORDING_COMPILE, web="true")
    builder = BuildpackBuilder(pack.parent, stack=harness.stack)
    files = {"app.txt": "v1", "Procfile": "web: true\nworker: true\n"}
    first = harness.build(builder, files, config={"A": "1"})
    again = harness.build(builder, files, config={"A": "1"})
    assert "-----> No changes since the last build; reusing its image" in again.log
    assert not any("compile args" in line for line in again.log)
    assert again.result.image.id == first.result.image.id
    assert again.result.processes == first.result.processes

    def rebuilt(**changes: object) -> bool:
        built = harness.build(builder, changes.get("files", files),  # type: ignore[arg-type]
                              config=changes.get("config", {"A": "1"}))  # type: ignore[arg-type]
        return any("compile args" in line for line in built.log)

    assert rebuilt(config={"A": "2"})
    assert rebuilt(files={**files, "app.txt": "v2"})
    assert not rebuilt(files={**files, "app.txt": "v2"})
    (pack / "bin" / "compile").write_text(RECORDING_COMPILE + "echo changed\n")
    assert rebuilt(files={**files, "app.txt": "v2"})
    last = buildkey.load(harness.settings().cache_dir / "demo")
    assert last is not None
    with harness.engine.images.records() as records:
        records.remove(last.image)
    assert rebuilt(files={**files, "app.txt": "v2"})  # the kept image is gone: build again


def test_pinned_multi_buildpack_from_the_dotbuildpacks_file(
    harness: Harness, packs: BuildpackFactory
) -> None:
    one = packs("one", detect_file="never-there", name="One",
                compile_sh='#!/bin/sh\necho "       one compiles"\necho one > "$1/order"\n', web="one")
    two = packs("two", detect_file="app.txt", name="Two",
                compile_sh='#!/bin/sh\necho "       two compiles after $(cat "$1/order")"\n', web="two")
    builder = BuildpackBuilder(one.parent, stack=harness.stack)
    built = harness.build(builder, {"app.txt": "", ".buildpacks": f"# mine\n{one}\n\n{two}\n"})
    assert built.result.processes == {"web": "two"}  # the last one's release
    text = "\n".join(built.log)
    assert "-----> Using buildpack one" in built.log  # pinned: runs though detect failed
    assert "-----> Two app detected" in built.log
    assert text.index("one compiles") < text.index("two compiles after one")
    assert built.result.image.config.labels["paas.buildpacks"] == "one,two"


def test_buildpack_url_wins_and_names_a_path_or_a_git_url_with_ref(
    harness: Harness, packs: BuildpackFactory, tmp_path: Path
) -> None:
    local = packs("local", detect_file="never", compile_sh='#!/bin/sh\necho "       local pack"\n', web="l")
    origin = _git_buildpack(tmp_path / "origin")
    builder = BuildpackBuilder(local.parent, stack=harness.stack)
    dotfile = {"app.txt": "", ".buildpacks": f"{origin}\n"}

    built = harness.build(builder, dotfile, config={"BUILDPACK_URL": str(local)})
    assert "       local pack" in built.log  # BUILDPACK_URL wins over .buildpacks

    url = f"file://{origin}#v1"
    built = harness.build(builder, {"app.txt": "1"}, config={"BUILDPACK_URL": url})
    assert f"-----> Fetching buildpack {url}" in built.log
    assert "       git pack v1" in built.log
    clones = harness.settings().cache_dir / sources.CLONES_DIR
    assert len([p for p in clones.iterdir() if not p.name.startswith(".clone-")]) == 1
    # Cloned once: a moved tag upstream does not change the kept clone.
    _commit_pack(origin, "v1-moved", tag="v1")
    built = harness.build(builder, {"app.txt": "2"}, config={"BUILDPACK_URL": url})
    assert "       git pack v1" in built.log
    assert not any("Fetching" in line for line in built.log)
    built = harness.build(builder, {"app.txt": "2"}, config={"BUILDPACK_URL": f"file://{origin}#v2"})
    assert "       git pack v2" in built.log

    with pytest.raises(BuildError, match="cannot fetch buildpack"):
        harness.build(builder, {"app.txt": "3"}, config={"BUILDPACK_URL": f"file://{origin}#nope"})
    with pytest.raises(BuildError, match="no bin/compile"):
        harness.build(builder, {"app.txt": "3"}, config={"BUILDPACK_URL": str(tmp_path)})


def test_no_buildpack_detects_the_app(harness: Harness, packs: BuildpackFactory) -> None:
    packs("alpha", detect_file="alpha.txt")
    pack = packs("beta", detect_file="beta.txt")
    (pack.parent / "order").write_text("alpha\nbeta\n")
    with pytest.raises(BuildError, match=r"no buildpack detected this app \(tried: alpha, beta\)"):
        harness.build(BuildpackBuilder(pack.parent, stack=harness.stack), {"other.txt": ""})


def _git_buildpack(origin: Path) -> Path:
    make_pack(origin, detect_file="never", compile_sh='#!/bin/sh\necho "       git pack v1"\n', web="g")
    subprocess.run(["git", "init", "-q", "-b", "main", str(origin)], check=True)
    _commit_pack(origin, "v1", tag="v1")
    _commit_pack(origin, "v2", tag="v2")
    return origin


def _commit_pack(origin: Path, version: str, *, tag: str) -> None:
    compile_path = origin / "bin" / "compile"
    compile_path.write_text(f'#!/bin/sh\necho "       git pack {version}"\n')
    compile_path.chmod(0o755)
    git = ["git", "-C", str(origin), "-c", "user.email=t@example.com", "-c", "user.name=T"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", version], check=True)
    subprocess.run([*git, "tag", "-f", tag], check=True, capture_output=True)


FLASK_APP = """import os
from flask import Flask
app = Flask(__name__)

@app.get("/")
def hello():
    return "hello %s"

if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ["PORT"]))
"""


def test_a_python_app_with_the_shipped_buildpacks_serves_and_a_code_change_installs_nothing(
    harness: Harness,
) -> None:
    builder = BuildpackBuilder(stack=harness.stack)  # the shipped buildpacks, detected
    harness.engine.network.ensure_bridge()
    with serve_wheels(harness.engine.network.gateway) as index:
        config = pip_config(index.url)
        files = {"requirements.txt": "flask\n", "Procfile": "web: python app.py\n"}
        first = harness.build(builder, {**files, "app.py": FLASK_APP % "v1"}, config=config)
        assert "-----> Python app detected" in first.log
        assert _serve(harness, first) == "hello v1"
        second = harness.build(builder, {**files, "app.py": FLASK_APP % "v2"}, config=config)
    assert any("unchanged" in line for line in second.log)
    assert not any("Collecting" in line or "Installing" in line for line in second.log), second.log
    assert _serve(harness, second) == "hello v2"


def _serve(harness: Harness, built: Built) -> str:
    """Start the web process as the scheduler does (launcher + one argument), GET /."""
    image, runtime = built.result.image, harness.engine.runtime
    spec = ContainerSpec(
        name="web", lowerdirs=tuple(str(p) for p in harness.engine.images.lowerdirs(image)),
        image=image.id, argv=(*(image.config.entrypoint or ()), built.result.processes["web"]),
        env=(*image.config.env, "PORT=5000"), workdir=image.config.working_dir,
        user=image.config.user, network="bridge",
    )
    container = runtime.start(runtime.create(spec).id)
    try:
        assert container.state.ip
        return http_get(container.state.ip, 5000, timeout=30, path="/")
    finally:
        runtime.remove(container.id, timeout=2)


def test_tree_digest_sees_content_names_modes_and_links_not_owners_or_times(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", {"a.txt": "a", "sub/b.txt": "b"})
    (tree / "link").symlink_to("a.txt")
    first = buildkey.tree_digest(tree)
    os.utime(tree / "a.txt", (1, 1))
    os.lchown(tree / "sub" / "b.txt", 1000, 1000)
    assert buildkey.tree_digest(tree) == first

    def changed(change: Callable[[], object]) -> bool:
        change()
        return buildkey.tree_digest(tree) != first

    assert changed(lambda: (tree / "a.txt").write_text("A"))
    (tree / "a.txt").write_text("a")
    assert buildkey.tree_digest(tree) == first
    assert changed(lambda: (tree / "a.txt").chmod(0o755))
    (tree / "a.txt").chmod(0o644)
    assert changed(lambda: ((tree / "link").unlink(), (tree / "link").symlink_to("sub/b.txt")))
    (tree / "link").unlink()
    (tree / "link").symlink_to("a.txt")
    assert changed(lambda: (tree / "sub" / "b.txt").rename(tree / "sub" / "c.txt"))
    (tree / "sub" / "c.txt").rename(tree / "sub" / "b.txt")
    assert changed(lambda: (tree / "empty").mkdir())
    (tree / "empty").rmdir()
    assert buildkey.tree_digest(tree) == first
    (tree / ".git").mkdir()
    assert buildkey.tree_digest(tree, frozenset({".git"})) == first
