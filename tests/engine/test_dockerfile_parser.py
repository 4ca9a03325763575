"""The Dockerfile parser against the Dockerfile reference: lines, directives, forms, flags, stages, errors."""

from __future__ import annotations

import re

import pytest

from paas.engine.dockerfile.checks import parse_duration
from paas.engine.dockerfile.parser import (
    MAX_DOCKERFILE_BYTES,
    Dockerfile,
    Instruction,
    parse,
    parse_exec_form,
    parse_instruction,
)
from paas.errors import DockerfileError


def steps(text: str) -> list[Instruction]:
    """Every instruction of a one-stage Dockerfile after its FROM."""
    return list(parse(text).stages[0].steps)


def only(text: str) -> Instruction:
    """The one instruction after `FROM busybox`."""
    (step,) = steps("FROM busybox\n" + text)
    return step


# --- lines: comments, continuations, directives ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "args"),
    [
        ("RUN echo a \\\n  && echo b", "echo a   && echo b"),
        ("RUN echo a\\\n&& echo b", "echo a&& echo b"),
        ("RUN echo a \\   \n  b", "echo a   b"),  # blanks after the escape still continue
        ("RUN a \\\n# comment\n  b", "a   b"),
        ("RUN a \\\n    # indented comment\n  b", "a   b"),
        ("RUN a \\\n\n  b", "a   b"),  # an empty continuation line is skipped, not an end
        ("RUN a \\\n   \t\n  b", "a   b"),
        ("RUN a \\\n  b \\\n  c", "a   b   c"),
        ("RUN a \\", "a"),  # a continuation at the end of the file
        ("   RUN   spaced   ", "spaced"),
        ("RUN echo '#not a comment'", "echo '#not a comment'"),
        ("RUN echo a # trailing text is not a comment", "echo a # trailing text is not a comment"),
    ],
)
def test_continuations_and_comments(body: str, args: str) -> None:
    assert only(body).args == args


def test_line_numbers_are_the_first_physical_line() -> None:
    text = "# c\n\nFROM busybox\nRUN a \\\n  b\n\n# c2\nCMD x\n"
    head = parse(text).stages[0]
    assert head.instruction.line == 3
    assert [(s.line, s.keyword) for s in head.steps] == [(4, "RUN"), (8, "CMD")]


def test_crlf_and_bom() -> None:
    text = "\ufeffFROM busybox\r\nRUN a \\\r\n  b\r\nCMD x\r\n"
    step, cmd = steps(text)
    assert step.args == "a   b" and cmd.args == "x" and cmd.line == 4


def test_original_keeps_the_instruction_as_written() -> None:
    step = only("copy --chown=1:2  a \\\n b")
    assert step.original == "copy --chown=1:2  a  b" and step.keyword == "COPY"


@pytest.mark.parametrize(
    ("head", "escape"),
    [
        ("# escape=`\n", "`"),
        ("#escape=`\n", "`"),
        ("# ESCAPE = `\n", "`"),
        ("#\tescape=` \n", "`"),
        ("# escape=\\\n", "\\"),
        ("# syntax=docker/dockerfile:1\n# escape=`\n", "`"),
        ("# syntax=docker/dockerfile:1\n", "\\"),
        ("\n# escape=`\n", "\\"),  # a blank line ends the directives
        ("# a comment\n# escape=`\n", "\\"),  # so does a comment
        ("# unknown=x\n# escape=`\n", "\\"),  # an unknown directive is a comment
    ],
)
def test_escape_directive(head: str, escape: str) -> None:
    assert parse(head + "FROM busybox\n").escape == escape


def test_backtick_escape_continues_lines_and_keeps_backslashes() -> None:
    text = "# escape=`\nFROM busybox\nRUN dir c:\\ `\n  && echo b\nCOPY a\\ b\\\n"
    run, copy = steps(text)
    assert run.args == "dir c:\\   && echo b"
    assert copy.args == "a\\ b\\"


def test_directive_after_an_instruction_is_a_comment() -> None:
    file = parse("FROM busybox\n# escape=`\nRUN a `\n")
    assert file.escape == "\\" and file.stages[0].steps[0].args == "a `"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# escape=x\nFROM busybox", "line 1: invalid escape token 'x'"),
        ("# escape=`\n# escape=`\nFROM busybox", "line 2: only one escape parser directive"),
        ("# syntax=a\n# syntax=b\nFROM busybox", "only one syntax parser directive"),
    ],
)
def test_directive_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse(text)


# --- instructions, forms and flags -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "keyword", "args", "exec_form"),
    [
        ('RUN ["a", "b c"]', "RUN", '["a", "b c"]', ("a", "b c")),
        ("RUN echo hi", "RUN", "echo hi", None),
        ("cmd []", "CMD", "[]", ()),
        ('CMD [ "a" ', "CMD", '[ "a"', None),  # not JSON: Docker's shell form
        ('CMD ["a"] extra', "CMD", '["a"] extra', None),
        ("CMD ['a']", "CMD", "['a']", None),  # single quotes are not JSON
        ('ENTRYPOINT ["/bin/app", "--flag"]', "ENTRYPOINT", '["/bin/app", "--flag"]', ("/bin/app", "--flag")),
        ('COPY ["a b", "/c"]', "COPY", '["a b", "/c"]', ("a b", "/c")),
        ('COPY ["a", "/c"', "COPY", '["a", "/c"', None),
        ('ADD ["a", "/c"]', "ADD", '["a", "/c"]', ("a", "/c")),
        ('SHELL ["/bin/bash", "-c"]', "SHELL", '["/bin/bash", "-c"]', ("/bin/bash", "-c")),
        ('VOLUME ["/a", "/b"]', "VOLUME", '["/a", "/b"]', ("/a", "/b")),
        ("VOLUME /a /b", "VOLUME", "/a /b", None),
        ('USER ["x"]', "USER", '["x"]', None),  # no exec form for USER
        ('RUN ["\\u00e9"]', "RUN", '["\\u00e9"]', ("\u00e9",)),
        ("LABEL a=b", "LABEL", "a=b", None),
        ("MAINTAINER Jane <jane@example.com>", "MAINTAINER", "Jane <jane@example.com>", None),
        ("EXPOSE 80/tcp 443", "EXPOSE", "80/tcp 443", None),
        ("ENV A=1 B=2", "ENV", "A=1 B=2", None),
        ("ENV A 1 2", "ENV", "A 1 2", None),
        ("ARG A B=2", "ARG", "A B=2", None),
        ("WORKDIR /app", "WORKDIR", "/app", None),
        ("STOPSIGNAL SIGKILL", "STOPSIGNAL", "SIGKILL", None),
        ("HEALTHCHECK NONE", "HEALTHCHECK", "NONE", None),
        ('HEALTHCHECK CMD ["curl", "-f", "x"]', "HEALTHCHECK", 'CMD ["curl", "-f", "x"]', None),
        ("ONBUILD RUN make", "ONBUILD", "RUN make", None),
        ("onbuild copy . /src", "ONBUILD", "copy . /src", None),
    ],
)
def test_instruction_forms(body: str, keyword: str, args: str, exec_form: tuple[str, ...] | None) -> None:
    step = only(body)
    assert (step.keyword, step.args, step.exec_form) == (keyword, args, exec_form)


@pytest.mark.parametrize(
    ("body", "flags", "args"),
    [
        ("COPY --from=build /a /b", (("from", "build"),), "/a /b"),
        (
            "COPY --from=build --chown=1:2 --chmod=0644 a b",
            (("from", "build"), ("chown", "1:2"), ("chmod", "0644")),
            "a b",
        ),
        ("COPY --link a b", (("link", "true"),), "a b"),
        ("COPY --link=false a b", (("link", "false"),), "a b"),
        ('COPY --chown="a b" x y', (("chown", "a b"),), "x y"),
        ("COPY --from= a b", (("from", ""),), "a b"),
        ("COPY -- --odd b", (), "--odd b"),  # `--` ends the flags
        ("ADD --checksum=sha256:abc --chown=1 a b", (("checksum", "sha256:abc"), ("chown", "1")), "a b"),
        ("ADD --link --chmod=755 a b", (("link", "true"), ("chmod", "755")), "a b"),
        (
            "HEALTHCHECK --interval=5m --timeout=3s --start-period=1s --start-interval=1s --retries=3 CMD x",
            (
                ("interval", "5m"),
                ("timeout", "3s"),
                ("start-period", "1s"),
                ("start-interval", "1s"),
                ("retries", "3"),
            ),
            "CMD x",
        ),
        ("COPY --from=a ['x', 'y']", (("from", "a"),), "['x', 'y']"),
    ],
)
def test_flags(body: str, flags: tuple[tuple[str, str], ...], args: str) -> None:
    step = only(body)
    assert step.flags == flags and step.args == args


def test_flag_lookup() -> None:
    step = only("COPY --from=build --link a b")
    assert step.flag("from") == "build" and step.flag("link") == "true"
    assert step.flag("chown") is None and step.flag("chown", "0:0") == "0:0"
    assert step.where("Dockerfile.dev") == "Dockerfile.dev line 2: COPY"


def test_from_platform_and_stage_name() -> None:
    stage = parse("FROM --platform=linux/amd64 debian:bookworm AS Build").stages[0]
    assert (stage.base, stage.name, stage.platform) == ("debian:bookworm", "build", "linux/amd64")
    assert stage.instruction.flag("platform") == "linux/amd64"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("RUN --mount=type=cache,target=/x make", "line 2: RUN: RUN --mount is not supported by this engine"),
        ("RUN --network=none make", "RUN --network is not supported"),
        ("RUN --security=insecure make", "RUN --security is not supported"),
        ("RUN --privileged make", "line 2: RUN: unknown flag: --privileged"),
        ("COPY --frm=a b c", "COPY: unknown flag: --frm"),
        ("COPY --checksum=sha256:x a b", "COPY: unknown flag: --checksum"),
        ("ADD --from=a b c", "ADD: unknown flag: --from"),
        ("CMD --version", "CMD: unknown flag: --version"),
        ("ENV --x=1", "ENV: unknown flag: --x"),
        ("COPY --from a b", "missing a value on flag: --from"),
        ("COPY --link= a b", "missing a value on flag: --link"),
        ("COPY --link=maybe a b", "expecting a boolean for flag --link"),
        ("COPY --from=a --from=b c d", "duplicate flag specified: --from"),
        ("HEALTHCHECK --interval=5 CMD x", "--interval is not a duration"),
        ("HEALTHCHECK --timeout=1us CMD x", "--timeout cannot be less than 1ms"),
        ("HEALTHCHECK --retries=-1 CMD x", "--retries must be a non-negative integer"),
        ("HEALTHCHECK --retries=x CMD x", "--retries must be a non-negative integer"),
    ],
)
def test_flag_errors(body: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=_literal(message)):
        parse("FROM busybox\n" + body)


def test_from_flag_errors() -> None:
    with pytest.raises(DockerfileError, match="line 1: FROM: unknown flag: --plat"):
        parse("FROM --plat=x busybox")


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [("0", 0), ("30s", 30 * 10**9), ("1m30s", 90 * 10**9), ("1.5h", 5400 * 10**9), ("500ms", 5 * 10**8),
     ("2us", 2000), ("3µs", 3000), ("+1s", 10**9), ("-1s", -(10**9)), ("1h2m3s4ms", 3723004000000)],
)  # fmt: skip
def test_parse_duration(text: str, nanoseconds: int) -> None:
    assert parse_duration(text) == nanoseconds


@pytest.mark.parametrize("text", ["", "5", "s", "1x", "1s2", ".s", "1 s", "--1s", "0s0"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# --- exec form -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ('["a", "b"]', ("a", "b")),
        ("  []", ()),
        ('["a\\"b"]', ('a"b',)),
        ("echo [", None),
        ("[", None),
        ('["a"', None),
        ('["a",]', None),
        ("[NaN]", None),
        ('{"a": 1}', None),
        ('["a"] ["b"]', None),
        ("[" * 5000, None),
    ],
)
def test_parse_exec_form(args: str, expected: tuple[str, ...] | None) -> None:
    assert parse_exec_form(args) == expected


@pytest.mark.parametrize("args", ["[1]", '["a", 2]', '["a", null]', '[["a"]]', '[{"a": "b"}]', "[true]"])
def test_exec_form_of_non_strings_is_an_error(args: str) -> None:
    with pytest.raises(DockerfileError, match="must be comprised of strings only"):
        parse_exec_form(args)
    with pytest.raises(DockerfileError, match="line 2: CMD: when using JSON array syntax"):
        parse("FROM busybox\nCMD " + args)


# --- stages and global ARGs ------------------------------------------------------------------


MULTI = """\
ARG BASE=busybox
ARG TAG
FROM $BASE:${TAG:-latest} AS build
ARG TAG
RUN make
FROM build as test
RUN check
FROM scratch
COPY --from=build /out /
"""


def test_stages_and_global_args() -> None:
    file = parse(MULTI, "Dockerfile.multi")
    assert isinstance(file, Dockerfile) and file.filename == "Dockerfile.multi"
    assert [a.args for a in file.global_args] == ["BASE=busybox", "TAG"]
    assert [(s.index, s.name, s.base) for s in file.stages] == [
        (0, "build", "$BASE:${TAG:-latest}"),
        (1, "test", "build"),
        (2, None, "scratch"),
    ]
    assert [[i.keyword for i in s.steps] for s in file.stages] == [["ARG", "RUN"], ["RUN"], ["COPY"]]
    assert file.stages[2].instruction.line == 8


@pytest.mark.parametrize(("key", "index"), [("build", 0), ("BUILD", 0), ("test", 1), ("0", 0), ("2", 2)])
def test_stage_lookup(key: str, index: int) -> None:
    assert parse(MULTI).stage(key).index == index


@pytest.mark.parametrize("key", ["nope", "3", "-1", ""])
def test_stage_lookup_errors(key: str) -> None:
    with pytest.raises(DockerfileError, match="no build stage named"):
        parse(MULTI).stage(key)


# --- ONBUILD and parse_instruction -----------------------------------------------------------


@pytest.mark.parametrize("body", ["", "   ", "\t"])
def test_parse_instruction_of_nothing(body: str) -> None:
    with pytest.raises(DockerfileError, match="^change line 1: empty instruction$"):
        parse_instruction(body, 1, "change")


def test_parse_instruction_for_triggers_and_changes() -> None:
    step = parse_instruction("copy --chown=1 a b", 7, "Dockerfile", "\\")
    assert (step.line, step.keyword, step.flags, step.args) == (7, "COPY", (("chown", "1"),), "a b")
    assert parse_instruction('CMD ["x"]', 1).exec_form == ("x",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("ONBUILD ONBUILD RUN x", "ONBUILD: chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("ONBUILD FROM busybox", "ONBUILD: FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD maintainer me", "ONBUILD: MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("ONBUILD FOO x", "line 2: FOO: unknown instruction"),
        ("ONBUILD RUN --mount=x y", "RUN --mount is not supported"),
        ("ONBUILD COPY a", "COPY: requires at least two arguments"),
        ("ONBUILD", "ONBUILD: requires at least one argument"),
    ],
)
def test_onbuild_errors(body: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=_literal(message)):
        parse("FROM busybox\n" + body)


# --- structure and argument errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Dockerfile has no instructions"),
        ("# only a comment\n\n", "Dockerfile has no instructions"),
        ("RUN true", "Dockerfile line 1: RUN: no build stage in current context"),
        ("# c\nARG A\nENV B=1\nFROM busybox", "Dockerfile line 3: ENV: no build stage"),
        ("ARG A", "Dockerfile has no FROM instruction"),
        ("FROM busybox\nFROBNICATE x", "Dockerfile line 2: FROBNICATE: unknown instruction"),
        ("FROM busybox\nRUN a \\\n  b\nfrob", "Dockerfile line 4: FROB: unknown instruction"),
        ("FROM busybox\nRUN", "line 2: RUN: requires at least one argument"),
        ("FROM busybox\nCMD", "CMD: requires at least one argument"),
        ("FROM busybox\nENTRYPOINT   ", "ENTRYPOINT: requires at least one argument"),
        ("FROM", "line 1: FROM: requires at least one argument"),
        ("FROM a b", "FROM: requires either one or three arguments"),
        ("FROM a AS", "FROM: requires either one or three arguments"),
        ("FROM a TO b", "FROM: requires either one or three arguments"),
        ("FROM a AS b c", "FROM: requires either one or three arguments"),
        ("FROM a AS 1st", "invalid name for build stage: '1st'"),
        ("FROM a AS b@c", "invalid name for build stage"),
        ("FROM a AS x\nFROM b AS X", "line 2: FROM: duplicate stage name 'x'"),
        ("FROM busybox\nCOPY a", "COPY: requires at least two arguments"),
        ('FROM busybox\nCOPY ["a"]', "COPY: requires at least two arguments"),
        ("FROM busybox\nADD a", "ADD: requires at least two arguments"),
        ("FROM busybox\nSHELL /bin/sh -c", "SHELL: requires the arguments to be in JSON form"),
        ('FROM busybox\nSHELL ["/bin/sh", "-c"', "SHELL: requires the arguments to be in JSON form"),
        ("FROM busybox\nSHELL []", "SHELL: requires at least one argument"),
        ('FROM busybox\nVOLUME [""]', "VOLUME: VOLUME specified can not be an empty string"),
        ("FROM busybox\nVOLUME []", "VOLUME specified can not be an empty string"),
        ("FROM busybox\nENV A", "ENV: must have two arguments"),
        ("FROM busybox\nENV A=1 B", "ENV: syntax error - can't find = in 'B'"),
        ("FROM busybox\nENV =1", "ENV: names can not be blank"),
        ("FROM busybox\nLABEL a", "LABEL: must have two arguments"),
        ("FROM busybox\nLABEL =x", "LABEL: names can not be blank"),
        ("FROM busybox\nARG =x", "ARG: ARG names can not be blank"),
        ("FROM busybox\nUSER", "USER: requires at least one argument"),
        ("FROM busybox\nWORKDIR", "WORKDIR: requires at least one argument"),
        ("FROM busybox\nEXPOSE", "EXPOSE: requires at least one argument"),
        ("FROM busybox\nSTOPSIGNAL", "STOPSIGNAL: requires at least one argument"),
        ("FROM busybox\nMAINTAINER", "MAINTAINER: requires at least one argument"),
        ("FROM busybox\nHEALTHCHECK", "HEALTHCHECK: requires at least one argument"),
        ("FROM busybox\nHEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("FROM busybox\nHEALTHCHECK --retries=1 NONE", "HEALTHCHECK NONE takes no arguments or flags"),
        ("FROM busybox\nHEALTHCHECK CMD", "missing command after HEALTHCHECK CMD"),
        ("FROM busybox\nHEALTHCHECK CMD []", "missing command after HEALTHCHECK CMD"),
        ("FROM busybox\nHEALTHCHECK CMD [1]", "must be comprised of strings only"),
        ("FROM busybox\nHEALTHCHECK RUN x", "unknown type 'RUN' in HEALTHCHECK"),
        ("FROM busybox\nRUN <<EOF\necho hi\nEOF", "line 2: RUN: heredocs (<<EOF) are not supported"),
        ("FROM busybox\nRUN cat <<-'EOT' > /x\nhi\nEOT", "RUN: heredocs (<<-'EOT') are not supported"),
        ("FROM busybox\nRUN python3 2<<EOF\nx\nEOF", "heredocs (2<<EOF)"),
        ("FROM busybox\nCOPY <<EOF /x\nhi\nEOF", "COPY: heredocs (<<EOF) are not supported"),
        ("FROM busybox\nADD <<EOF /x\nhi\nEOF", "ADD: heredocs"),
    ],
)
def test_errors_name_the_file_line_and_instruction(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=_literal(message)):
        parse(text)


@pytest.mark.parametrize(
    "body",
    [
        'RUN echo "<<EOF"',
        "RUN echo \\<<EOF",
        "RUN cat <<< word",
        "RUN echo a<<b",
        "RUN x <<",
        "RUN x <<-",
        'RUN ["<<EOF"]',
    ],
)
def test_text_that_is_not_a_heredoc(body: str) -> None:
    assert only(body).keyword == "RUN"


def test_errors_use_the_given_filename() -> None:
    with pytest.raises(DockerfileError, match="^app/Dockerfile.prod line 2: FOO: unknown instruction$"):
        parse("FROM busybox\nFOO bar", "app/Dockerfile.prod")


def test_size_limit() -> None:
    padding = "# " + "x" * 100 + "\n"
    big = "FROM busybox\n" + padding * (MAX_DOCKERFILE_BYTES // len(padding) + 1)
    with pytest.raises(DockerfileError, match="larger than 1 MiB"):
        parse(big)
    assert parse(big[: MAX_DOCKERFILE_BYTES - 10]).stages[0].base == "busybox"


def test_every_keyword_is_case_insensitive() -> None:
    text = "\n".join([
        "from busybox as base", "run a", "cmd b", "label a=b", "maintainer m", "expose 1", "env a=b",
        "add a b", "copy a b", "entrypoint c", "volume /v", "user u", "workdir /w", "arg a",
        "onbuild run x", "stopsignal 9", "healthcheck none", 'shell ["sh", "-c"]',
    ])  # fmt: skip
    keywords = [s.keyword for s in steps(text)]
    assert keywords == [
        "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
        "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
    ]  # fmt: skip


def _literal(message: str) -> str:
    return re.escape(message)
