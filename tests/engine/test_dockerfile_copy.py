"""COPY and ADD on the real engine: destination rules, --chown/--chmod, archives, URLs, --from."""

from __future__ import annotations

import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerfile_kit import assert_clean, build, image_fs, make_context, read, run_in
from testkit import scratch_engine

from paas.engine.engine import Engine
from paas.errors import BuildError


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with scratch_engine(tmp_path_factory.mktemp("engine")) as engine:
        yield engine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A static file server on loopback; yields its base URL."""
    root = tmp_path_factory.mktemp("www")
    (root / "hello.txt").write_text("fetched over http")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, mode: int = 0o644, uid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode, info.uid, info.gid = mode, uid, uid
    return info


def _dir(name: str) -> tarfile.TarInfo:
    info = _file(name, 0o755)
    info.type = tarfile.DIRTYPE
    return info


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_destination_rules(engine: Engine, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "WORKDIR /work\n"
        "COPY one.txt renamed.txt\n"          # no trailing slash: the file is named dest
        "COPY one.txt two.txt /multi/\n"      # several sources into a dir
        "COPY dir /contents\n"                # a dir's contents, not the dir itself
        "COPY one.txt /tmp\n"                 # an existing dir takes the file inside
        "COPY *.txt globbed/\n"               # glob, WORKDIR-relative dest created
        "COPY dir/link deref.txt\n"           # a named symlink source is followed
    )
    context = make_context(tmp_path, dockerfile, {"one.txt": "1", "two.txt": "2", "dir/sub/x": "x"})
    (context / "dir" / "link").symlink_to("sub/x")
    image = build(engine, context)
    fs = image_fs(engine, image)
    assert read(engine, image, "/work/renamed.txt") == "1"
    assert read(engine, image, "/multi/one.txt") == "1" and read(engine, image, "/multi/two.txt") == "2"
    assert read(engine, image, "/contents/sub/x") == "x"
    assert fs.node("/contents/dir") is None
    link = fs.node("/contents/link", follow=False)
    assert link is not None and link.host.readlink() == Path("sub/x")  # kept as a symlink
    assert read(engine, image, "/tmp/one.txt") == "1"
    tmp = fs.node("/tmp")
    assert tmp is not None and tmp.st.st_mode & 0o7777 == 0o1777  # the existing dir keeps its mode
    assert read(engine, image, "/work/globbed/one.txt") == "1"
    assert read(engine, image, "/work/deref.txt") == "x"
    assert_clean(engine)


def test_chown_and_chmod(engine: Engine, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "RUN echo 'app:x:1234:2345::/home/app:/bin/sh' >> /etc/passwd"
        " && echo 'staff:x:3456:' >> /etc/group\n"
        "COPY --chown=app:staff --chmod=640 file.txt /owned/by-name.txt\n"
        "COPY --chown=1001:1002 dir /numeric/\n"
        "COPY --chown=app file.txt /user-only.txt\n"
        "COPY --chmod=0755 file.txt /exec.sh\n"
    )
    context = make_context(tmp_path, dockerfile, {"file.txt": "f", "dir/a": "a"})
    (context / "file.txt").chmod(0o600)
    image = build(engine, context)
    out = run_in(engine, image, ("stat", "-c", "%n %u %g %a", "/owned", "/owned/by-name.txt",
                                 "/numeric/a", "/user-only.txt", "/exec.sh"))
    assert out.split("\n") == [
        "/owned 1234 3456 755",  # a dir COPY creates belongs to the --chown owner
        "/owned/by-name.txt 1234 3456 640",
        "/numeric/a 1001 1002 644",
        "/user-only.txt 1234 1234 600",  # no group: the gid is the uid's number, like Docker
        "/exec.sh 0 0 755",
    ]
    assert_clean(engine)


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_add_extracts_local_archives(engine: Engine, tmp_path: Path, mode: str) -> None:
    archive = _tar([(_dir("pkg"), None), (_file("pkg/bin.sh", 0o755, uid=7), b"#!/bin/sh\n"),
                    (_link("pkg/link", "bin.sh"), None),
                    (_link("pkg/hard", "pkg/bin.sh", tarfile.LNKTYPE), None)], mode)
    context = make_context(tmp_path, "FROM busybox\nADD release.bin /opt/\nCOPY release.bin /raw/\n",
                           {"release.bin": archive})
    image = build(engine, context)
    out = run_in(engine, image, ("stat", "-c", "%n %u %a %h", "/opt/pkg/bin.sh", "/opt/pkg/hard"))
    assert out.split("\n") == ["/opt/pkg/bin.sh 7 755 2", "/opt/pkg/hard 7 755 2"]
    assert read(engine, image, "/opt/pkg/link") == "#!/bin/sh\n"
    node = image_fs(engine, image).node("/raw/release.bin")
    assert node is not None and node.st.st_size == len(archive)  # COPY never unpacks


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        ([(_file("../escape"), b"x")], "would write outside the destination"),
        ([(_file("/etc/evil"), b"x")], "has an absolute path"),
        ([(_link("out", "../../.."), None)], "points outside the destination"),
        ([(_link("abs", "/etc"), None), (_file("abs/x"), b"x")], "points to an absolute path"),
        ([(_link("in", "."), None), (_file("in/x"), b"x")], "goes through a symlink"),
        ([(_link("hard", "/etc/passwd", tarfile.LNKTYPE), None)], "has an absolute path"),
        ([(_link("hard", "missing", tarfile.LNKTYPE), None)], "must point to an earlier file"),
    ],
)
def test_add_refuses_unsafe_archives(
    engine: Engine, tmp_path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]], error: str
) -> None:
    context = make_context(tmp_path, "FROM busybox\nADD evil.tar.gz /dest/\n", {"evil.tar.gz": _tar(entries)})
    with pytest.raises(BuildError, match=f"line 2: ADD: .*{error}"):
        build(engine, context)
    assert_clean(engine)


def test_add_url_from_loopback(engine: Engine, tmp_path: Path, server: str) -> None:
    dockerfile = f"FROM busybox\nADD {server}/hello.txt /downloads/\nADD {server}/hello.txt /named.txt\n"
    log: list[str] = []
    image = build(engine, make_context(tmp_path, dockerfile), log)
    assert read(engine, image, "/downloads/hello.txt") == "fetched over http"
    out = run_in(engine, image, ("stat", "-c", "%a", "/named.txt"))
    assert out == "600"
    log.clear()
    build(engine, make_context(tmp_path, dockerfile), log)
    assert sum("CACHED" in line for line in log) == 2  # same content: the fetched digest hits


def test_add_url_failures_are_clear(engine: Engine, tmp_path: Path, server: str) -> None:
    context = make_context(tmp_path, "FROM busybox\nADD http://127.0.0.1:1/file.txt /x\n")
    with pytest.raises(BuildError, match=r"^ADD http://127.0.0.1:1/file.txt: cannot fetch: .*refused"):
        build(engine, context)
    context = make_context(tmp_path, f"FROM busybox\nADD {server}/missing.txt /x\n")
    with pytest.raises(BuildError, match="cannot fetch: HTTP 404"):
        build(engine, context)
    assert_clean(engine)


def test_copy_from_an_image_keeps_owners(engine: Engine, tmp_path: Path) -> None:
    source = build(engine, make_context(
        tmp_path, "FROM busybox\nRUN mkdir -p /data/sub && echo hi > /data/sub/f && chown -R 5:6 /data\n"),
        tag="copy-source:1")
    image = build(engine, make_context(tmp_path, "FROM busybox\nCOPY --from=copy-source:1 /data/ /here/\n"
                                       "COPY --from=copy-source:1 /data/s* /glob/\n"))
    out = run_in(engine, image, ("stat", "-c", "%n %u %g", "/here/sub/f", "/glob/f"))
    assert out.split("\n") == ["/here/sub/f 5 6", "/glob/f 5 6"]
    assert source.id != image.id
    assert_clean(engine)
