"""Fuzzing the Dockerfile parser and the substitution functions: our error or a result, never a crash."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paas.engine.dockerfile.parser import Dockerfile, parse, parse_exec_form, parse_instruction
from paas.engine.dockerfile.substitute import expand, expand_args, expand_pairs, expand_words
from paas.errors import DockerfileError

FRAGMENTS = [
    "FROM", "from", "RUN", "CMD", "ENTRYPOINT", "COPY", "ADD", "ENV", "ARG", "LABEL", "EXPOSE",
    "VOLUME", "USER", "WORKDIR", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER",
    "NONE", "AS", "as", "busybox", "scratch", "stage-1", " ", "  ", "\t", "\n", "\r\n", "\\\n",
    "`\n", "\\", "`", "#", "# escape=`\n", "# escape=\\\n", "# syntax=x\n", "\ufeff", "[", "]",
    '"', "'", ",", '["a", "b"]', '["a"', "[1]", "[]", "$", "${", "}", "${A:-", "${A:+x}", "${A-b}",
    "$A", "${A##*", "${A%", "${A/x/", "${A//", "*", "?", "<<EOF", "=", "A=1", 'B="x y"', "--from=0",
    "--chown=1:1", "--link", "--mount=type=cache",
    "--platform=linux/amd64", "--interval=5s", "--retries=3", "--", "--x", "CMD true", "80/tcp",
    "/app", "é", "\x00", "\u2028", "\x0b",
]  # fmt: skip

KEYWORDS = [f for f in FRAGMENTS[:20] if f.isalpha()] + ["NOPE"]

_pieces = st.sampled_from(FRAGMENTS) | st.text(max_size=8)
dockerfile_like = st.lists(_pieces, max_size=40).map("".join)
_args = st.lists(st.sampled_from(FRAGMENTS[20:]) | st.text(max_size=4), max_size=6).map("".join)
_line = st.tuples(st.sampled_from(KEYWORDS), _args).map(" ".join)
# Mostly well-formed lines, so that the checks behind the first error get exercised too.
dockerfile_lines = st.lists(_line, max_size=12).map(lambda lines: "FROM busybox\n" + "\n".join(lines))
anything = st.one_of(dockerfile_like, dockerfile_lines, st.text(max_size=200))
envs = st.dictionaries(st.sampled_from(["A", "B", "EMPTY", "é", "$"]), st.text(max_size=6), max_size=4)
escapes = st.sampled_from(["\\", "`"])

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


@FUZZ
@given(anything)
def test_parse_returns_or_raises_our_error(text: str) -> None:
    try:
        result = parse(text)
    except DockerfileError:
        return
    assert isinstance(result, Dockerfile) and result.stages
    for stage in result.stages:
        for step in (stage.instruction, *stage.steps):
            # Re-parsing one instruction as written gives the same instruction.
            assert parse_instruction(step.original, step.line, escape=result.escape) == step


@FUZZ
@given(anything)
def test_exec_form(text: str) -> None:
    try:
        form = parse_exec_form(text)
    except DockerfileError:
        return
    assert form is None or all(isinstance(item, str) for item in form)


@FUZZ
@given(anything, envs, escapes)
def test_expand_functions(text: str, env: dict[str, str], escape: str) -> None:
    for function in (expand, expand_words, expand_pairs, expand_args):
        with contextlib.suppress(DockerfileError):
            function(text, env, escape)
