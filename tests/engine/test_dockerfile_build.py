"""Dockerfile builds on the real engine (busybox base): stages, ARGs, RUN, metadata, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerfile_kit import assert_clean, build, make_context, read, run_in
from testkit import scratch_engine

from paas.engine.engine import Engine
from paas.engine.images import Image
from paas.errors import BuildError, DockerfileError, ImageNotFoundError, PaasError


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with scratch_engine(tmp_path_factory.mktemp("engine")) as engine:
        yield engine


def test_build_runs_steps_into_layers(engine: Engine, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "ENV GREETING=hello TARGET=/srv/app\n"
        "WORKDIR $TARGET\n"
        "COPY src/ ./\n"
        "RUN echo \"$GREETING from run\" > made.txt && rm -f /etc/group\n"
        'CMD ["cat", "made.txt"]\n'
    )
    context = make_context(tmp_path, dockerfile, {"src/a.txt": "A", "src/sub/b.txt": "B"})
    log: list[str] = []
    image = build(engine, context, log)

    base = engine.images.get("busybox")
    assert len(image.diff_ids) == len(base.diff_ids) + 3  # WORKDIR, COPY, RUN
    assert image.config.working_dir == "/srv/app"
    assert image.config.cmd == ("cat", "made.txt")
    assert "GREETING=hello" in image.config.env
    assert "Step 5/6 : RUN echo \"$GREETING from run\" > made.txt && rm -f /etc/group" in log
    out = run_in(engine, image, ("sh", "-c", "cat made.txt a.txt sub/b.txt; ls /etc/group || true"))
    assert "hello from run" in out and "AB" in out.replace("\n", "")
    assert "No such file" in out  # the RUN step's deletion is a whiteout in its layer
    history = image.history[len(base.history):]
    assert [h.created_by for h in history] == [
        "ENV GREETING=hello TARGET=/srv/app", "WORKDIR $TARGET", "COPY src/ ./",
        "RUN echo \"$GREETING from run\" > made.txt && rm -f /etc/group", 'CMD ["cat", "made.txt"]',
    ]
    assert [h.empty_layer for h in history] == [True, False, False, False, True]
    assert_clean(engine)


def test_failed_run_is_a_build_error_naming_the_step(engine: Engine, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\nRUN echo oops && exit 3\n")
    error = r"^Dockerfile line 2: RUN: 'echo oops && exit 3' returned a non-zero code: 3$"
    with pytest.raises(BuildError, match=error):
        build(engine, context)
    assert_clean(engine)


def test_multi_stage_copy_from_and_target(engine: Engine, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox AS builder\n"
        "RUN mkdir /out && echo compiled > /out/app.bin\n"
        "FROM busybox AS unused\n"
        "RUN echo unused stage ran && exit 1\n"
        "FROM builder AS tester\n"
        "RUN echo tested > /out/tested\n"
        "FROM busybox\n"
        "COPY --from=builder /out/app.bin /usr/local/bin/\n"
        "COPY --from=0 /out /copied\n"
        "LABEL stage=final\n"
    )
    context = make_context(tmp_path, dockerfile)
    log: list[str] = []
    final = build(engine, context, log)
    assert "unused stage ran" not in log  # a stage the target does not need never runs
    assert read(engine, final, "/usr/local/bin/app.bin") == "compiled\n"
    assert read(engine, final, "/copied/app.bin") == "compiled\n"
    assert read(engine, final, "/out/tested") is None
    assert final.config.labels == {"stage": "final"}
    assert log[0] == "Step 1/6 : FROM busybox AS builder"  # only the needed stages count

    tester = build(engine, context, target="tester", tag="multi:tester")
    assert read(engine, tester, "/out/tested") == "tested\n"
    assert engine.images.get("multi:tester").id == tester.id
    with pytest.raises(BuildError, match="target stage 'nope' could not be found"):
        build(engine, context, target="nope")
    assert_clean(engine)


def test_stage_named_like_its_base_image(engine: Engine, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox AS busybox\n"  # the image, not the stage itself
        "RUN echo stage > /stage\n"
        "FROM busybox\n"  # now the earlier stage
        "RUN cat /stage\n"
    )
    log: list[str] = []
    image = build(engine, make_context(tmp_path, dockerfile), log)
    assert "stage" in log
    assert read(engine, image, "/stage") == "stage\n"


def test_global_args_in_from_and_stage_scoping(engine: Engine, tmp_path: Path) -> None:
    dockerfile = (
        "ARG BASE=busybox\n"
        "ARG VERSION=1.0\n"
        "FROM $BASE\n"
        'RUN echo "before=[$VERSION]" > /before\n'
        "ARG VERSION\n"
        "ARG LOCAL=default\n"
        'RUN echo "after=[$VERSION] local=[$LOCAL]" > /after\n'
        "ENV LOCAL=from-env\n"
        'RUN echo "env wins=[$LOCAL]" > /env\n'
        "LABEL version=$VERSION\n"
    )
    context = make_context(tmp_path, dockerfile)
    image = build(engine, context)
    assert read(engine, image, "/before") == "before=[]\n"  # a global ARG is not in scope in a stage
    assert read(engine, image, "/after") == "after=[1.0] local=[default]\n"
    assert read(engine, image, "/env") == "env wins=[from-env]\n"
    assert image.config.labels == {"version": "1.0"}
    assert not any(e.startswith("VERSION=") for e in image.config.env)  # ARGs do not persist

    log: list[str] = []
    image = build(engine, context, log, build_args={"VERSION": "2.0", "LOCAL": "cli", "EXTRA": "x"})
    assert read(engine, image, "/after") == "after=[2.0] local=[cli]\n"
    assert image.config.labels == {"version": "2.0"}
    assert "[Warning] One or more build-args [EXTRA] were not consumed" in log


def test_substitution_in_copy_workdir_label(engine: Engine, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "ARG SRC=files\n"
        "ENV DEST=/opt/dest NAME=thing\n"
        "WORKDIR ${DEST}/work\n"
        "COPY $SRC/${NAME}.txt ../\n"
        'LABEL "name"="${NAME:-none}" other=${UNSET:-fallback} literal=\'$NAME\'\n'
        "EXPOSE ${PORT:-8080}/udp 9000\n"
        "USER ${USER_NAME:-nobody}\n"
    )
    context = make_context(tmp_path, dockerfile, {"files/thing.txt": "content"})
    image = build(engine, context)
    assert image.config.working_dir == "/opt/dest/work"
    assert read(engine, image, "/opt/dest/thing.txt") == "content"
    assert image.config.labels == {"name": "thing", "other": "fallback", "literal": "$NAME"}
    assert image.config.exposed_ports == ("8080/udp", "9000/tcp")
    assert image.config.user == "nobody"


def test_config_instructions_end_in_the_image_config(engine: Engine, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "HEALTHCHECK --interval=30s --timeout=3s --start-period=1m30s --retries=2 CMD wget -q -O- localhost\n"
        "STOPSIGNAL SIGQUIT\n"
        'VOLUME ["/data", "/logs"]\n'
        "VOLUME /cache\n"
        "EXPOSE 80 443/tcp 53/udp\n"
        "MAINTAINER someone@example.com\n"
        'ENTRYPOINT ["/bin/sh", "-c"]\n'
        "CMD echo hello\n"
        "ONBUILD RUN echo triggered\n"
    )
    image = build(engine, make_context(tmp_path, dockerfile))
    config = image.config
    assert config.healthcheck == {
        "Test": ["CMD-SHELL", "wget -q -O- localhost"], "Interval": 30 * 10**9,
        "Timeout": 3 * 10**9, "StartPeriod": 90 * 10**9, "Retries": 2,
    }
    assert config.stop_signal == "SIGQUIT"
    assert config.volumes == ("/cache", "/data", "/logs")
    assert config.exposed_ports == ("443/tcp", "53/udp", "80/tcp")
    assert config.labels == {"maintainer": "someone@example.com"}
    assert config.entrypoint == ("/bin/sh", "-c")
    assert config.cmd == ("/bin/sh", "-c", "echo hello")
    assert config.on_build == ("RUN echo triggered",)
    assert read(engine, image, "/data") is None  # VOLUME is metadata only

    none = build(engine, make_context(tmp_path, "FROM busybox\nHEALTHCHECK NONE\n"))
    assert none.config.healthcheck == {"Test": ["NONE"]}


def test_shell_changes_the_shell_form(engine: Engine, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        'SHELL ["/bin/sh", "-c", "echo \\"shell got: $0\\" > /shell.txt; eval \\"$0\\""]\n'
        "RUN echo ran > /ran.txt\n"
        "CMD echo hi\n"
    )
    image = build(engine, make_context(tmp_path, dockerfile))
    assert read(engine, image, "/shell.txt") == "shell got: echo ran > /ran.txt\n"
    assert read(engine, image, "/ran.txt") == "ran\n"
    assert image.config.cmd == ("/bin/sh", "-c", 'echo "shell got: $0" > /shell.txt; eval "$0"', "echo hi")
    assert image.config.shell == ("/bin/sh", "-c", 'echo "shell got: $0" > /shell.txt; eval "$0"')


def test_onbuild_triggers_run_after_from_and_are_not_inherited(engine: Engine, tmp_path: Path) -> None:
    parent = (
        "FROM busybox\n"
        "ONBUILD COPY marker.txt /from-trigger.txt\n"
        "ONBUILD RUN echo trigger ran > /trigger.txt\n"
    )
    build(engine, make_context(tmp_path, parent), tag="onbuild-parent")
    log: list[str] = []
    child = build(engine, make_context(tmp_path, "FROM onbuild-parent\nRUN cat /trigger.txt\n",
                                       {"marker.txt": "child context"}), log, tag="onbuild-child")
    assert " # Executing 2 build triggers" in log
    assert "trigger ran" in log  # the child's RUN sees the trigger's file
    assert read(engine, child, "/from-trigger.txt") == "child context"
    assert child.config.on_build == ()
    grandchild = build(engine, make_context(tmp_path, "FROM onbuild-child\nLABEL x=y\n"))
    assert len(grandchild.diff_ids) == len(child.diff_ids)  # no trigger ran again


def _with_image(image: Image) -> object:
    def pull(ref: str) -> Image:
        pulled.append(ref)
        return image

    pulled: list[str] = []
    pull.pulled = pulled  # type: ignore[attr-defined]
    return pull


def test_missing_base_image_is_pulled_or_not_found(engine: Engine, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM registry.example/app:1\nLABEL a=b\n")
    with pytest.raises(ImageNotFoundError, match=r"line 1: FROM: image not found: 'registry.example/app:1'"):
        build(engine, context)
    busybox = engine.images.get("busybox")
    pull = _with_image(busybox)
    image = build(engine, context, pull=pull)
    assert pull.pulled == ["registry.example/app:1"]  # type: ignore[attr-defined]
    assert image.diff_ids == busybox.diff_ids


def test_dockerignored_files_never_enter_the_image(engine: Engine, tmp_path: Path) -> None:
    files = {".dockerignore": "secret.txt\n*.log\n!keep.log\n", "secret.txt": "s", "a.log": "l",
             "keep.log": "k", "app.txt": "a"}
    image = build(engine, make_context(tmp_path, "FROM busybox\nCOPY . /app/\n", files))
    out = run_in(engine, image, ("ls", "-A", "/app"))
    assert out.split("\n") == [".dockerignore", "Dockerfile", "app.txt", "keep.log"]
    with pytest.raises(BuildError, match="'secret.txt' not found in the build context"):
        build(engine, make_context(tmp_path, "FROM busybox\nCOPY secret.txt /\n", files))


@pytest.mark.parametrize(
    ("dockerfile", "error", "kind"),
    [
        ("FROM busybox\nCOPY ../secret /x\n",
         "line 2: COPY: '../secret' is outside the build context", BuildError),
        ("FROM busybox\nCOPY missing.txt /x\n",
         "line 2: COPY: 'missing.txt' not found in the build context", BuildError),
        ("FROM nosuchimage\n", "image not found: 'nosuchimage'", ImageNotFoundError),
        ("FROM busybox\nBOGUS x\n", "line 2: BOGUS: unknown instruction", DockerfileError),
        ("LABEL a=b\n", "line 1: LABEL: no build stage", DockerfileError),
        ("# only a comment\n", "has no instructions", DockerfileError),
        ("ARG X=1\n", "no FROM instruction", DockerfileError),
        ("FROM busybox\nCOPY --from=nowhere /a /b\n",
         "--from=nowhere: no build stage or image named 'nowhere'", BuildError),
        ("FROM busybox AS one\nCOPY --from=one /a /b\n",
         "'one' refers to the current or a later build stage", BuildError),
        ("FROM scratch\nRUN true\n", "line 2: RUN: cannot run a command in an empty", BuildError),
        ("FROM busybox\nCOPY a b c\n", "the destination must be a directory and end with a /", BuildError),
        ("FROM busybox\nCOPY --chown=nosuchuser a /a\n", "no user 'nosuchuser'", BuildError),
        ("FROM busybox\nCOPY --chmod=9z a /a\n", "expected an octal mode", BuildError),
        ("FROM busybox\nCOPY http://127.0.0.1:1/x /x\n", "source can't be a URL for COPY", BuildError),
        ("FROM busybox\nUSER nosuchuser\nRUN true\n", "line 3: RUN: .*nosuchuser", BuildError),
        ("FROM busybox\nSTOPSIGNAL SIGNOPE\n", "line 2: STOPSIGNAL: invalid signal", DockerfileError),
        ("FROM busybox\nEXPOSE 80/icmp\n", "line 2: EXPOSE: invalid port", DockerfileError),
    ],
)
def test_bad_dockerfiles(
    engine: Engine, tmp_path: Path, dockerfile: str, error: str, kind: type[PaasError]
) -> None:
    (tmp_path / "secret").write_text("s")
    context = make_context(tmp_path, dockerfile, {"a": "a", "b": "b"})
    with pytest.raises(kind, match=error):
        build(engine, context)
    assert_clean(engine)
