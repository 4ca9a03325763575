"""BuildContext: COPY/ADD source resolution, the ignore-aware walk, and the content checksum."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from paas.engine.dockerfile.context import CHUNK, BuildContext
from paas.errors import BuildError

WHERE = "Dockerfile line 4: COPY"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _context(root: Path, ignore: str | None = None, files: dict[str, str] | None = None) -> BuildContext:
    root.mkdir(parents=True, exist_ok=True)
    _tree(root, files or {})
    if ignore is not None:
        (root / ".dockerignore").write_text(ignore)
    return BuildContext.open(root)


@pytest.fixture()
def ctx(tmp_path: Path) -> BuildContext:
    root = tmp_path / "ctx"
    return _context(root, files={
        "Dockerfile": "FROM scratch\n",
        "a.txt": "a", "b.txt": "b", "c.md": "c", "x[1].txt": "x",
        "src/app.py": "print()", "src/lib/util.py": "u", "src/lib/data.json": "{}",
        "docs/index.md": "i",
    })


# -- resolve -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "expected"), [
    (".", ["."]),
    ("./", ["."]),
    ("/", ["."]),
    ("", ["."]),
    ("src/..", ["."]),
    ("nope/..", ["."]),  # cleaned lexically first, as Go's path.Clean does
    ("a.txt", ["a.txt"]),
    ("./a.txt", ["a.txt"]),
    ("/a.txt", ["a.txt"]),
    ("/src/../a.txt", ["a.txt"]),
    ("src//lib/", ["src/lib"]),
    ("*.txt", ["a.txt", "b.txt", "x[1].txt"]),
    ("?.txt", ["a.txt", "b.txt"]),
    ("[ab].txt", ["a.txt", "b.txt"]),
    ("[^a].txt", ["b.txt"]),
    ("x\\[1].txt", ["x[1].txt"]),
    ("x[[]1].txt", ["x[1].txt"]),
    ("src/*", ["src/app.py", "src/lib"]),
    ("*/*.py", ["src/app.py"]),
    ("src/*/*.json", ["src/lib/data.json"]),
    ("*/lib", ["src/lib"]),
    ("s*/l*/u*", ["src/lib/util.py"]),
    ("**/*.py", ["src/app.py"]),  # COPY globs are filepath.Match: `**` is `*`, one component
])
def test_resolve(ctx: BuildContext, source: str, expected: list[str]) -> None:
    assert ctx.resolve(source, WHERE) == expected


@pytest.mark.parametrize("source", ["..", "../x", "/../x", "a/../../x", "src/../../ctx/a.txt", "/.."])
def test_resolve_refuses_paths_outside(ctx: BuildContext, source: str) -> None:
    with pytest.raises(BuildError, match=rf"^{WHERE}: '.*' is outside the build context"):
        ctx.resolve(source, WHERE)


@pytest.mark.parametrize("source", ["nope", "*.nomatch", "src/nope/*", "a.txt/x", "[z].txt", "a.txt/*"])
def test_resolve_reports_missing_sources(ctx: BuildContext, source: str) -> None:
    message = f"{WHERE}: {source!r} not found in the build context"
    with pytest.raises(BuildError, match="^" + re.escape(message)):
        ctx.resolve(source, WHERE)


def test_resolve_reports_a_bad_glob(ctx: BuildContext) -> None:
    with pytest.raises(BuildError, match=rf"^{WHERE}: bad pattern 'a\[.txt'"):
        ctx.resolve("a[.txt", WHERE)


def test_resolve_never_matches_ignored_paths(tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", "*.log\nsecret\nbuild\n", {
        "app.py": "x", "debug.log": "l", "secret/key": "k", "build/out.o": "o", "keep.txt": "k",
    })
    for source in ("debug.log", "*.log", "secret", "secret/key", "build/out.o", "build"):
        with pytest.raises(BuildError, match="not found in the build context"):
            ctx.resolve(source, WHERE)
    assert ctx.resolve("*", WHERE) == [".dockerignore", "app.py", "keep.txt"]


def test_resolve_an_ignored_dir_with_an_exception_below(tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", "dir\n!dir/keep\n", {"dir/keep": "k", "dir/drop": "d"})
    assert ctx.resolve("dir", WHERE) == ["dir"]
    assert ctx.resolve("dir/*", WHERE) == ["dir/keep"]
    assert [e.rel for e in ctx.walk("dir")] == ["dir", "dir/keep"]
    with pytest.raises(BuildError, match="not found"):
        ctx.resolve("dir/drop", WHERE)


def test_dockerfile_and_dockerignore_may_be_excluded_from_copy(tmp_path: Path) -> None:
    files = {"Dockerfile": "FROM scratch\n", "a": "a"}
    ctx = _context(tmp_path / "ctx", "Dockerfile\n.dockerignore\n", files)
    for source in ("Dockerfile", ".dockerignore"):
        with pytest.raises(BuildError, match="not found"):
            ctx.resolve(source, WHERE)
    assert [e.rel for e in ctx.walk(".")] == [".", "a"]
    # The files stay readable for the builder itself.
    assert (ctx.root / "Dockerfile").read_text() == "FROM scratch\n"


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    root = _context(tmp_path / "ctx", "a\n", {"a": "a", "b": "b", "build/app.Dockerfile": "FROM x\n"}).root
    (root / "build" / "app.Dockerfile.dockerignore").write_text("b\n")
    ctx = BuildContext.open(root, "build/app.Dockerfile")
    assert ctx.resolve("a", WHERE) == ["a"]
    with pytest.raises(BuildError, match="not found"):
        ctx.resolve("b", WHERE)


def test_open_refuses_a_missing_context(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="is not a directory"):
        BuildContext.open(tmp_path / "missing")


# -- symlinks ----------------------------------------------------------------------------------------

@pytest.fixture()
def linked(tmp_path: Path) -> BuildContext:
    outside = _tree(tmp_path / "outside", {"secret": "s", "dir/file": "f"})
    root = tmp_path / "ctx"
    ctx = _context(root, "hidden\n", {"real/file.txt": "r", "real/sub/deep.txt": "d", "hidden": "h"})
    links = {
        "to-file": "real/file.txt", "to-dir": "real", "abs-in": str(root / "real" / "file.txt"),
        "to-hidden": "hidden", "abs-out": str(outside / "secret"), "rel-out": "../outside/secret",
        "dir-out": str(outside / "dir"), "dangling": "missing", "loop1": "loop2", "loop2": "loop1",
        "real/up": "..", "real/sub/back": "../../real/file.txt", "climb": "real/../..",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    return ctx


@pytest.mark.parametrize(("source", "expected"), [
    ("to-file", ["to-file"]),
    ("to-dir", ["to-dir"]),
    ("to-dir/file.txt", ["to-dir/file.txt"]),
    ("to-dir/sub/*.txt", ["to-dir/sub/deep.txt"]),
    ("abs-in", ["abs-in"]),
    ("real/up/real/file.txt", ["real/up/real/file.txt"]),
    ("real/sub/back", ["real/sub/back"]),
])
def test_symlinks_inside_the_context_are_followed(linked: BuildContext, source: str,
                                                  expected: list[str]) -> None:
    assert linked.resolve(source, WHERE) == expected


@pytest.mark.parametrize(("source", "link"), [
    ("abs-out", "abs-out"), ("rel-out", "rel-out"), ("dir-out/file", "dir-out"), ("dir-out", "dir-out"),
    ("climb", "climb"), ("dir-out/*", "dir-out"),
])
def test_symlinks_leaving_the_context_are_refused(linked: BuildContext, source: str, link: str) -> None:
    message = f"{source!r} is outside the build context (through the symlink '{link}')"
    with pytest.raises(BuildError, match=re.escape(message)):
        linked.resolve(source, WHERE)


def test_globs_do_not_look_through_symlinks_that_leave(linked: BuildContext) -> None:
    # `dir-out` leads out of the context: a glob passing through it finds nothing there ...
    assert linked.resolve("*/file.txt", WHERE) == ["real/file.txt", "to-dir/file.txt"]
    with pytest.raises(BuildError, match="'\\*/file' not found"):
        linked.resolve("*/file", WHERE)
    # ... but a match that is itself such a symlink is refused, not silently dropped.
    with pytest.raises(BuildError, match="'abs-\\*' is outside the build context .*'abs-out'"):
        linked.resolve("abs-*", WHERE)


@pytest.mark.parametrize("source", ["to-hidden", "dangling", "loop1", "to-dir/nope"])
def test_symlinks_to_nothing_included_are_not_found(linked: BuildContext, source: str) -> None:
    with pytest.raises(BuildError, match="not found in the build context"):
        linked.resolve(source, WHERE)


def test_a_symlink_source_is_copied_as_its_target(linked: BuildContext) -> None:
    [entry] = list(linked.walk("to-file"))
    assert (entry.rel, entry.kind, entry.path) == ("to-file", "file", linked.root / "real" / "file.txt")
    entries = list(linked.walk("to-dir"))
    assert [(e.rel, e.kind) for e in entries] == [
        ("to-dir", "dir"), ("to-dir/file.txt", "file"), ("to-dir/sub", "dir"),
        ("to-dir/sub/back", "symlink"), ("to-dir/sub/deep.txt", "file"), ("to-dir/up", "symlink"),
    ]
    # Symlinks inside a copied directory stay symlinks, even when they point out of it.
    assert entries[3].link == "../../real/file.txt" and entries[5].link == ".."


def test_walk_keeps_symlinks_as_symlinks(linked: BuildContext) -> None:
    entries = {e.rel: e for e in linked.walk(".")}
    assert "hidden" not in entries
    assert entries["abs-out"].kind == "symlink"
    assert entries["abs-out"].link.endswith("outside/secret")
    assert entries["dangling"].size == len("missing")


def test_walk_refuses_outside_and_missing(linked: BuildContext) -> None:
    with pytest.raises(BuildError, match="outside the build context"):
        list(linked.walk("abs-out"))
    with pytest.raises(BuildError, match="not found in the build context"):
        list(linked.walk("hidden"))
    with pytest.raises(BuildError, match="outside the build context"):
        list(linked.walk("../x"))


# -- walk --------------------------------------------------------------------------------------------

def test_walk_order_parents_first_sorted(tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", "**/*.tmp\nvendor\n!vendor/keep\n", {
        "b/z.txt": "z", "b/a.txt": "a", "b/c/d.txt": "d", "a.txt": "a", "B.txt": "B", "b.tmp": "t",
        "b/c/e.tmp": "t", "vendor/keep/x": "x", "vendor/drop/y": "y", "vendor/top": "t",
    })
    assert [e.rel for e in ctx.walk(".")] == [
        ".", ".dockerignore", "B.txt", "a.txt", "b", "b/a.txt", "b/c", "b/c/d.txt", "b/z.txt",
        "vendor", "vendor/keep", "vendor/keep/x",
    ]
    assert [e.rel for e in ctx.walk("b")] == ["b", "b/a.txt", "b/c", "b/c/d.txt", "b/z.txt"]
    assert [e.rel for e in ctx.walk("b/a.txt")] == ["b/a.txt"]


def test_walk_records(tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", files={"d/f": "hello"})
    os.chown(ctx.root / "d" / "f", 1234, 4321)
    os.chmod(ctx.root / "d" / "f", 0o4751)  # after chown, which clears setuid
    os.symlink("f", ctx.root / "d" / "l")
    root, d, f, link = ctx.walk(".")
    assert (root.rel, root.kind, root.path, root.size) == (".", "dir", ctx.root, 0)
    assert (d.kind, d.size, d.link) == ("dir", 0, "")
    assert (f.rel, f.kind, f.mode, f.uid, f.gid, f.size) == ("d/f", "file", 0o4751, 1234, 4321, 5)
    assert (link.rel, link.kind, link.link, link.size) == ("d/l", "symlink", "f", 1)


def test_walk_skips_sockets_and_fifos(tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", files={"f": "x"})
    os.mkfifo(ctx.root / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(ctx.root / "sock"))
        assert [e.rel for e in ctx.walk(".")] == [".", "f"]
        assert ctx.resolve("*", WHERE) == ["f"]
        with pytest.raises(BuildError, match="not found"):
            ctx.resolve("sock", WHERE)


def test_walk_of_a_deep_tree(tmp_path: Path) -> None:
    deep = "/".join(f"d{i}" for i in range(60))
    ctx = _context(tmp_path / "ctx", files={f"{deep}/leaf": "x"})
    rels = [e.rel for e in ctx.walk(".")]
    assert len(rels) == 62 and rels[-1] == f"{deep}/leaf"


# -- checksum ----------------------------------------------------------------------------------------

@pytest.fixture()
def sums(tmp_path: Path) -> Iterator[tuple[BuildContext, Path]]:
    ctx = _context(tmp_path / "ctx", "**/*.log\n", {"app/main.py": "print(1)\n", "app/data.bin": "0123456789",
                                               "top.txt": "t"})
    os.symlink("main.py", ctx.root / "app" / "link")
    yield ctx, ctx.root


def _fresh(root: Path) -> str:
    return BuildContext.open(root).checksum(["app", "top.txt"])


def test_checksum_is_stable(sums: tuple[BuildContext, Path]) -> None:
    ctx, root = sums
    first = ctx.checksum(["app", "top.txt"])
    assert first.startswith("sha256:") and len(first) == 71
    assert ctx.checksum(["app", "top.txt"]) == first
    assert _fresh(root) == first
    assert ctx.checksum(["top.txt", "app"]) != first
    assert ctx.checksum(["app"]) != first


def test_checksum_ignores_mtime_and_ignored_files(sums: tuple[BuildContext, Path]) -> None:
    ctx, root = sums
    before = ctx.checksum(["app", "top.txt"])
    for path in (root / "app", root / "app" / "main.py", root / "top.txt"):
        os.utime(path, (1_000_000, 1_000_000))
    os.utime(root / "app" / "link", (5, 5), follow_symlinks=False)
    (root / "app" / "debug.log").write_text("noise")
    assert ctx.checksum(["app", "top.txt"]) == before
    assert _fresh(root) == before


@pytest.mark.parametrize("change", [
    "content", "same-size-content-same-mtime", "mode", "owner", "group", "add", "remove", "rename",
    "symlink-target", "empty-dir", "dir-mode",
])
def test_checksum_changes_with_any_included_change(sums: tuple[BuildContext, Path], change: str) -> None:
    ctx, root = sums
    before = ctx.checksum(["app", "top.txt"])
    main = root / "app" / "main.py"
    if change == "content":
        main.write_text("print(2)\nmore\n")
    elif change == "same-size-content-same-mtime":
        st = main.stat()
        main.write_text("print(2)\n")
        os.utime(main, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "mode":
        main.chmod(0o755)
    elif change == "owner":
        os.chown(main, 1000, -1)
    elif change == "group":
        os.chown(main, -1, 1000)
    elif change == "add":
        (root / "app" / "new.py").write_text("")
    elif change == "remove":
        (root / "app" / "data.bin").unlink()
    elif change == "rename":
        (root / "app" / "data.bin").rename(root / "app" / "data2.bin")
    elif change == "symlink-target":
        (root / "app" / "link").unlink()
        os.symlink("data.bin", root / "app" / "link")
    elif change == "empty-dir":
        (root / "app" / "empty").mkdir()
    elif change == "dir-mode":
        (root / "app").chmod(0o700)
    assert ctx.checksum(["app", "top.txt"]) != before  # the same BuildContext sees it ...
    assert _fresh(root) != before  # ... and so does a new one


def test_checksum_of_a_file_larger_than_a_chunk(tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", files={})
    big = ctx.root / "big.bin"
    data = bytearray(os.urandom(CHUNK * 2 + 17))
    big.write_bytes(data)
    before = ctx.checksum(["big.bin"])
    assert BuildContext.open(ctx.root).checksum(["big.bin"]) == before
    data[-1] ^= 0xFF
    big.write_bytes(data)
    assert ctx.checksum(["big.bin"]) != before


def test_checksum_follows_a_source_symlink(linked: BuildContext) -> None:
    before = linked.checksum(["to-file"])
    (linked.root / "real" / "file.txt").write_text("changed")
    assert linked.checksum(["to-file"]) != before


def test_checksum_of_missing_source_fails(sums: tuple[BuildContext, Path]) -> None:
    ctx, _ = sums
    with pytest.raises(BuildError, match="'nope' not found in the build context"):
        ctx.checksum(["nope"])


def test_a_shared_digest_cache_still_sees_rewrites(tmp_path: Path) -> None:
    root = _context(tmp_path / "ctx", files={"f": "one"}).root
    cache: dict[str, tuple[tuple[int, ...], str]] = {}
    before = BuildContext.open(root, digests=cache).checksum(["."])
    assert len(cache) == 1
    assert BuildContext.open(root, digests=cache).checksum(["."]) == before
    st = (root / "f").stat()
    (root / "f").write_text("two")  # same size, and the old mtime put back
    os.utime(root / "f", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert BuildContext.open(root, digests=cache).checksum(["."]) != before


# -- walk against a brute-force reading of the rules ---------------------------------------------------

_TREE = [
    "README.md", "docs/a.md", "docs/b.txt", "src/main.go", "src/pkg/util.go", "src/pkg/util_test.go",
    "src/pkg/tmp/x.o", "vendor/lib/a.go", "vendor/lib/keep.txt", "vendor/other/b.go", "temp1",
    "build/out/app", "build/out/app.map", "node_modules/m/index.js", "node_modules/keep/k.js",
]


@pytest.mark.parametrize("ignore", [
    "",
    "**/*.go\n!src/main.go",
    "*\n!src",
    "vendor\n!vendor/lib/keep.txt",
    "**/tmp\nbuild/**\n!build/out/app",
    "node_modules\n!node_modules/keep/**\n*.md\n!docs",
    "temp?\n*/*/tmp\ndocs/\n!docs/b.txt\ndocs",
])
def test_walk_agrees_with_ignored(tmp_path: Path, ignore: str) -> None:
    ctx = _context(tmp_path / "ctx", ignore, {rel: rel for rel in _TREE})
    dirs = {"/".join(rel.split("/")[:depth]) for rel in _TREE for depth in range(1, rel.count("/") + 1)}
    included = {rel for rel in [".dockerignore", *_TREE, *dirs] if not ctx.rules.ignored(rel)}
    expected = {"."} | included | {
        "/".join(rel.split("/")[:depth]) for rel in included for depth in range(1, rel.count("/") + 1)}
    rels = [e.rel for e in ctx.walk(".")]
    assert set(rels) == expected
    # Parents before children, siblings by name: the order of a sorted pre-order walk.
    assert rels == sorted(rels, key=lambda rel: [] if rel == "." else rel.split("/"))
