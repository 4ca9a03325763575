"""Where buildpacks come from: the shipped ones in detection order, or the ones an app pins.

An app pins buildpacks with the BUILDPACK_URL config var (one) or a `.buildpacks` file at the
root of its source (one per line). A pin is the name of a shipped buildpack (`python`), an
absolute local path, or a git URL the host can reach (`https://...`, `file://...`, with an
optional `#ref`). Git buildpacks are cloned once on the host, into the shared clone cache
keyed by the URL and ref, and reused by every later build of every app.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from paas.builders.base import MAX_SOURCE_FILE
from paas.errors import BuildError

BUILDPACKS_DIR = Path(__file__).resolve().parents[2] / "buildpacks"
ORDER_FILE = "order"
PIN_FILE = ".buildpacks"
PIN_VAR = "BUILDPACK_URL"
HEROKU_PREFIX = "heroku/"
GIT_SCHEMES = ("https://", "http://", "file://", "git://", "ssh://")
GIT_TIMEOUT_S = 300
# A dot: no app is named like this, so clones never share a folder with an app's cache.
CLONES_DIR = ".buildpacks"


def _quiet(line: str) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Buildpack:
    """A buildpack folder on the host (holding bin/detect, bin/compile, bin/release)."""

    name: str
    path: Path


def shipped(root: Path = BUILDPACKS_DIR) -> list[Buildpack]:
    """The shipped buildpacks in the order of detection (the `order` file)."""
    try:
        lines = (root / ORDER_FILE).read_text().splitlines()
    except OSError as exc:
        raise BuildError(f"cannot read the buildpack order {root / ORDER_FILE}: {exc}") from None
    names = [line.split("#", 1)[0].strip() for line in lines]
    return [_checked(Buildpack(name, root / name), name) for name in names if name]


def pins(source: Path, config: dict[str, str]) -> list[str]:
    """The buildpacks the app pins: BUILDPACK_URL wins over `.buildpacks`; [] = detect."""
    if config.get(PIN_VAR, "").strip():
        return [config[PIN_VAR].strip()]
    path = source / PIN_FILE
    if not path.is_file() or path.is_symlink():
        return []
    if path.stat().st_size > MAX_SOURCE_FILE:
        raise BuildError(f"the {PIN_FILE} file is larger than 64 KiB")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def resolve(
    pin: str, *, root: Path, clones: Path, forbidden: Path, log: Callable[[str], None] = _quiet
) -> Buildpack:
    """The local folder of one pin, cloning a git URL the first time it is used."""
    if pin.startswith(GIT_SCHEMES):
        url, _, ref = pin.partition("#")
        if url.startswith("file://"):
            _refuse_inside(Path(url[len("file://"):]), forbidden, pin)
        return _checked(Buildpack(_url_name(url), clone(url, ref, clones, log)), pin)
    if pin.startswith("/"):
        _refuse_inside(Path(pin), forbidden, pin)
        return _checked(Buildpack(Path(pin).name, Path(pin)), pin)
    name = pin.removeprefix(HEROKU_PREFIX)  # Heroku's `heroku/python`: the shipped python
    if "/" in name or name in ("", ".", ".."):
        raise BuildError(
            f"buildpack {pin!r}: use the name of a shipped buildpack, an absolute path or a git URL"
        )
    return _checked(Buildpack(name, root / name), pin)


def clone(url: str, ref: str, clones: Path, log: Callable[[str], None]) -> Path:
    """The clone of url at ref under `clones`, made once (concurrent builds race harmlessly)."""
    target = clones / hashlib.sha256(f"{url}#{ref}".encode()).hexdigest()[:24]
    if target.is_dir():
        return target
    log(f"-----> Fetching buildpack {url}{'#' + ref if ref else ''}")
    clones.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".clone-", dir=clones))
    try:
        _git(["clone", "--quiet", "--no-hardlinks", "--", url, str(scratch / "tree")], url)
        if ref:
            _git(["-C", str(scratch / "tree"), "checkout", "--quiet", "--detach", ref, "--"], url)
        os.chmod(scratch / "tree", 0o755)
        try:
            os.rename(scratch / "tree", target)
        except OSError:
            if not target.is_dir():  # not another build's clone that won the race
                raise BuildError(f"cannot keep the clone of buildpack {url}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _git(args: list[str], url: str) -> None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"}
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, env=env,
            timeout=GIT_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"cannot fetch buildpack {url}: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()
        raise BuildError(f"cannot fetch buildpack {url}: {detail[-1] if detail else 'git failed'}")


def _url_name(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".git").removeprefix("heroku-buildpack-") or "buildpack"


def _refuse_inside(path: Path, forbidden: Path, pin: str) -> None:
    # The platform's home holds other apps' repositories and caches: never a buildpack.
    resolved, home = path.resolve(), forbidden.resolve()
    if resolved == home or home in resolved.parents:
        raise BuildError(f"buildpack {pin!r}: paths inside the platform's home are not allowed")


def _checked(pack: Buildpack, pin: str) -> Buildpack:
    if not (pack.path / "bin" / "compile").is_file():
        raise BuildError(f"buildpack {pin!r}: no bin/compile in {pack.path}")
    return pack
