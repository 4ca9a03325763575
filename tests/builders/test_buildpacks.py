"""The shipped buildpacks (buildpacks/), each run for real: detect, compile and release in
containers of the stack image as its non-root user, then the app they built served from a
container and fetched over the engine's bridge. pip installs from a local wheel index
(tests/wheelhouse.py); npm needs no registry (a `file:` dependency)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml
from stackkit import StackRunner, Step
from testkit import http_get
from wheelhouse import pip_config, serve_wheels

ORDER = [line.strip() for line in (Path(__file__).resolve().parents[2] / "buildpacks/order")
         .read_text().splitlines() if line.strip() and not line.startswith("#")]
FLASK_APP = """\
import os
from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return "{greeting} from flask\\n"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ["PORT"]))
"""
NODE_SERVER = """\
const http = require("http");
const greet = require("greet");
http.createServer((req, res) => res.end(greet("node") + "\\n")).listen(process.env.PORT);
"""
NODE_PACKAGE = {"name": "hello", "version": "1.0.0", "private": True,
                "scripts": {"start": "node server.js"}, "dependencies": {"greet": "file:greet"}}
NODE_LOCK = {
    "name": "hello", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
    "packages": {
        "": {"name": "hello", "version": "1.0.0", "dependencies": {"greet": "file:greet"}},
        "greet": {"version": "1.0.0", "bin": {"greet": "cli.js"}},
        "node_modules/greet": {"resolved": "greet", "link": True},
    },
}
GREET = {
    "package.json": json.dumps({"name": "greet", "version": "1.0.0", "main": "index.js",
                                "bin": {"greet": "cli.js"}}),
    "index.js": 'module.exports = (who) => "hello from " + who;\n',
    "cli.js": '#!/usr/bin/env node\nconsole.log(require("./index.js")(process.argv[2]));\n',
}


def tree(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def default_types(step: Step) -> dict[str, str]:
    assert step.code == 0, step.text
    return yaml.safe_load(step.text)["default_process_types"] or {}


@pytest.fixture(scope="module")
def wheels(stack_runner: StackRunner) -> Iterator[dict[str, str]]:
    """pip's config for the local index, served on the host side of the engine's bridge."""
    with serve_wheels(stack_runner.engine.network.gateway) as index:
        yield pip_config(index.url)


@pytest.mark.parametrize(("files", "detected"), [
    ({"requirements.txt": "flask\n", "package.json": "{}"}, {"python": "Python",
                                                              "nodejs": "Node.js"}),
    ({"pyproject.toml": "[project]\nname = 'x'\n"}, {"python": "Python"}),
    ({"setup.py": ""}, {"python": "Python"}),
    ({"package.json": "{}", "index.html": "hi"}, {"nodejs": "Node.js"}),
    ({"index.html": "hi"}, {"static": "Static HTML"}),
    ({"public/index.html": "hi"}, {"static": "Static HTML"}),
    ({".static": "dist\n", "Procfile": "web: x"}, {"static": "Static HTML",
                                                   "procfile": "Procfile"}),
    ({"index.html": "hi", "Procfile": "web: x"}, {"procfile": "Procfile"}),
    ({"README.md": "nothing to run"}, {}),
])
def test_detect(stack_runner: StackRunner, tmp_path: Path, files: dict[str, str],
                detected: dict[str, str]) -> None:
    app = tree(tmp_path / "app", files)
    found = {}
    for pack in ORDER:
        step = stack_runner.buildpack(pack, "detect", app)
        assert step.code in (0, 1), step.text
        if step.code == 0:
            found[pack] = step.text
        else:
            assert step.text == ""
    assert found == detected


def test_order_is_python_nodejs_static_procfile() -> None:
    assert ORDER == ["python", "nodejs", "static", "procfile"]


def test_python_installs_then_reuses_the_cached_virtualenv(
    stack_runner: StackRunner, wheels: dict[str, str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    files = {"requirements.txt": "flask\n", "app.py": FLASK_APP.format(greeting="hello")}
    first = tree(tmp_path / "first", files)
    # LD_PRELOAD must not reach the build (every program would complain); PIP_* must.
    config = {**wheels, "LD_PRELOAD": "/nowhere/lib.so"}
    step = stack_runner.buildpack("python", "compile", first, cache, config)
    assert step.code == 0, step.text
    assert step.lines[0].startswith("-----> Using Python 3.11")
    assert "-----> Installing requirements with pip" in step.lines
    assert f"       Looking in links: {wheels['PIP_FIND_LINKS']}" in step.lines, step.text
    assert any(line.startswith("       Collecting flask") for line in step.lines), step.text
    assert any("Successfully installed" in line and "flask" in line.lower() for line in step.lines)
    assert "preloaded" not in step.text
    assert all(line.startswith(("-----> ", "       ")) for line in step.lines), step.text
    assert list((cache / "pip").iterdir()), "pip's cache is in CACHE_DIR"
    assert "/app/.venv/bin" in (first / ".profile.d/python.sh").read_text()
    assert default_types(stack_runner.buildpack("python", "release", first)) == {
        "web": "python app.py"}
    assert http_get(stack_runner.serve(first, "python app.py"), 5000, path="/") == (
        "hello from flask\n")

    # A new push: same requirements, changed code: nothing is installed.
    second = tree(tmp_path / "second", {**files, "app.py": FLASK_APP.format(greeting="hi")})
    step = stack_runner.buildpack("python", "compile", second, cache, wheels)
    assert step.code == 0, step.text
    assert "       Requirements unchanged; reusing the cached virtualenv" in step.lines
    assert not [line for line in step.lines if "Collecting" in line or "Installing" in line]
    assert http_get(stack_runner.serve(second, "python app.py"), 5000, path="/") == (
        "hi from flask\n")


def test_python_changed_requirements_install_again(
    stack_runner: StackRunner, wheels: dict[str, str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    first = tree(tmp_path / "first", {"requirements.txt": "itsdangerous\n"})
    assert stack_runner.buildpack("python", "compile", first, cache, wheels).code == 0
    second = tree(tmp_path / "second", {"requirements.txt": "itsdangerous\nblinker\n"})
    step = stack_runner.buildpack("python", "compile", second, cache, wheels)
    assert step.code == 0, step.text
    assert "unchanged" not in step.text
    assert any(line.startswith("       Collecting blinker") for line in step.lines), step.text
    assert list((second / ".venv/lib").glob("python3.11/site-packages/blinker"))


def test_python_pyproject_dependencies_and_runtime_version(
    stack_runner: StackRunner, wheels: dict[str, str], tmp_path: Path
) -> None:
    app = tree(tmp_path / "app", {
        "pyproject.toml": "[project]\nname = 'demo'\nversion = '1'\ndependencies = ['blinker']\n",
        "runtime.txt": "python-3.11\n",
    })
    cache = tmp_path / "cache"
    cache.mkdir()
    step = stack_runner.buildpack("python", "compile", app, cache, wheels)
    assert step.code == 0, step.text
    assert step.lines[0].startswith("-----> Using Python 3.11.") and "runtime.txt" in step.lines[0]
    assert list((app / ".venv/lib").glob("python3.11/site-packages/blinker"))
    assert default_types(stack_runner.buildpack("python", "release", app)) == {}


def test_python_setup_py_apps_are_installed_on_every_build(
    stack_runner: StackRunner, tmp_path: Path
) -> None:
    """Their venv holds the app itself: reusing it would serve the previous push's code."""
    setup = "from setuptools import setup\nsetup(name='hello', version='1', py_modules=['hello'])\n"
    cache = tmp_path / "cache"
    cache.mkdir()
    gateway = stack_runner.engine.network.gateway
    with serve_wheels(gateway, requirements=("setuptools", "wheel")) as index:
        for version in ("one", "two"):
            app = tree(tmp_path / version, {"setup.py": setup, "hello.py": f"V = {version!r}\n"})
            step = stack_runner.buildpack("python", "compile", app, cache, pip_config(index.url))
            assert step.code == 0, step.text
            assert "unchanged" not in step.text
            installed = app / ".venv/lib/python3.11/site-packages/hello.py"
            assert installed.read_text() == f"V = {version!r}\n"


@pytest.mark.parametrize(("name", "text"), [("runtime.txt", "python-3.12.1\n"),
                                            (".python-version", "3.10\n")])
def test_python_a_version_the_stack_lacks_fails_clearly(
    stack_runner: StackRunner, tmp_path: Path, name: str, text: str
) -> None:
    app = tree(tmp_path / "app", {"requirements.txt": "flask\n", name: text})
    cache = tmp_path / "cache"
    cache.mkdir()
    step = stack_runner.buildpack("python", "compile", app, cache)
    assert step.code == 1
    wanted = text.strip().removeprefix("python-")
    assert f" !     Requested runtime python-{wanted} (from {name}) is not available" in step.text
    assert "debian-bookworm has Python 3.11." in step.text
    assert not (app / ".venv").exists()


def test_nodejs_ci_with_a_lockfile_and_npm_start(stack_runner: StackRunner, tmp_path: Path) -> None:
    app = tree(tmp_path / "app", {
        "package.json": json.dumps(NODE_PACKAGE), "package-lock.json": json.dumps(NODE_LOCK),
        "server.js": NODE_SERVER, **{f"greet/{k}": v for k, v in GREET.items()},
    })
    cache = tmp_path / "cache"
    cache.mkdir()
    step = stack_runner.buildpack("nodejs", "compile", app, cache, {"LD_PRELOAD": "/nowhere.so"})
    assert step.code == 0, step.text
    assert step.lines[0].startswith("-----> Using node v18.")
    assert "-----> Installing dependencies with npm ci (package-lock.json)" in step.lines
    assert "preloaded" not in step.text
    assert (app / "node_modules/greet/index.js").is_file()
    assert (app / "node_modules/.bin/greet").exists()
    assert not (app / ".npm").exists(), "npm's cache and logs stay in CACHE_DIR"
    assert (cache / "npm").is_dir()
    assert "/app/node_modules/.bin" in (app / ".profile.d/nodejs.sh").read_text()
    assert default_types(stack_runner.buildpack("nodejs", "release", app)) == {"web": "npm start"}
    assert http_get(stack_runner.serve(app, "npm start"), 5000, path="/") == "hello from node\n"


def test_nodejs_without_a_lockfile_runs_npm_install_and_build(
    stack_runner: StackRunner, tmp_path: Path
) -> None:
    package = {"name": "plain", "version": "1.0.0", "scripts": {"build": "greet built > built.txt"},
               "dependencies": {"greet": "file:greet"}}
    app = tree(tmp_path / "app", {"package.json": json.dumps(package),
                                  **{f"greet/{k}": v for k, v in GREET.items()}})
    cache = tmp_path / "cache"
    cache.mkdir()
    step = stack_runner.buildpack("nodejs", "compile", app, cache)
    assert step.code == 0, step.text
    assert "-----> Installing dependencies with npm install (no package-lock.json)" in step.lines
    assert "-----> Running npm run build" in step.lines
    assert (app / "built.txt").read_text() == "hello from built\n"


def test_nodejs_a_failing_install_fails_the_compile(stack_runner: StackRunner, tmp_path: Path) -> None:
    package = {"name": "broken", "version": "1.0.0", "dependencies": {"gone": "file:missing"}}
    app = tree(tmp_path / "app", {"package.json": json.dumps(package)})
    cache = tmp_path / "cache"
    cache.mkdir()
    step = stack_runner.buildpack("nodejs", "compile", app, cache)
    assert step.code == 1
    assert " !     npm install failed" in step.text


@pytest.mark.parametrize(("files", "served"), [
    ({"index.html": "<h1>top</h1>\n"}, "."),
    ({"public/index.html": "<h1>public</h1>\n"}, "public"),
    ({".static": "dist\n", "dist/index.html": "<h1>dist</h1>\n", "index.html": "no"}, "dist"),
])
def test_static_serves_the_page(stack_runner: StackRunner, tmp_path: Path,
                                files: dict[str, str], served: str) -> None:
    app = tree(tmp_path / "app", files)
    cache = tmp_path / "cache"
    cache.mkdir()
    step = stack_runner.buildpack("static", "compile", app, cache)
    assert step.code == 0, step.text
    assert step.lines[0] == f"-----> Serving {served} with python3 -m http.server (the stack's)"
    web = default_types(stack_runner.buildpack("static", "release", app))["web"]
    assert "--bind 0.0.0.0" in web and "$PORT" in web
    body = http_get(stack_runner.serve(app, web), 5000, path="/")
    assert body == (app / served / "index.html").read_text()


def test_static_refuses_a_folder_outside_the_app(stack_runner: StackRunner, tmp_path: Path) -> None:
    app = tree(tmp_path / "app", {".static": "../etc\n"})
    step = stack_runner.buildpack("static", "release", app)
    assert step.code == 1 and "a folder of the app" in step.text
    shutil.rmtree(app)


def test_procfile_builds_nothing_and_names_no_types(stack_runner: StackRunner,
                                                     tmp_path: Path) -> None:
    app = tree(tmp_path / "app", {"Procfile": "web: sh -c 'exec httpd'\n", "run.sh": "x"})
    cache = tmp_path / "cache"
    cache.mkdir()
    step = stack_runner.buildpack("procfile", "compile", app, cache)
    assert step.code == 0, step.text
    assert step.lines[0].startswith("-----> ")
    assert default_types(stack_runner.buildpack("procfile", "release", app)) == {}
