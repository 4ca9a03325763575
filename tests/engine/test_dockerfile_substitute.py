"""Docker's word processing: quotes, escapes, $-substitution, and the ENV/LABEL/ARG/EXPOSE splitters."""

from __future__ import annotations

import re

import pytest

from paas.engine.dockerfile.substitute import (
    expand,
    expand_args,
    expand_pairs,
    expand_words,
)
from paas.errors import DockerfileError

ENV = {"A": "1", "EMPTY": "", "SPACED": "x  y", "PATH": "/usr/bin", "_u1": "u", "é": "accent"}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("plain", "plain"),
        ("$A", "1"),
        ("$A/x", "1/x"),
        ("${A}y", "1y"),
        ("$Ay", ""),  # the name is `Ay`, unset
        ("$_u1-", "u-"),
        ("$é", "accent"),
        ("$MISSING.", "."),
        ("${MISSING}", ""),
        ("$", "$"),
        ("a$", "a$"),
        ("$ x", "$ x"),
        ("$/", "$/"),
        ("$1", ""),  # positional parameters are never set
        ("$12x", "x"),
        ("$$", ""),  # a special parameter, unset, like in Docker
        ("${A:-dflt}", "1"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${MISSING:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${MISSING-dflt}", "dflt"),
        ("${A-dflt}", "1"),
        ("${A:+set}", "set"),
        ("${EMPTY:+set}", ""),
        ("${MISSING:+set}", ""),
        ("${EMPTY+set}", "set"),
        ("${MISSING+set}", ""),
        ("${A:?msg}", "1"),
        ("${EMPTY?msg}", ""),
        ("${MISSING:-${A}}", "1"),
        ("${MISSING:-${NOPE:-deep}}", "deep"),
        ("${MISSING:-a b}", "a b"),
        ("${MISSING:-'$A'}", "$A"),
        ('${MISSING:-"$A x"}', "1 x"),
        ("${MISSING:-\\}}", "}"),
        ("${MISSING:-}", ""),
        ("${A:+$PATH:x}", "/usr/bin:x"),
        ("'$A'", "$A"),
        ("'a \\ b'", "a \\ b"),
        ('"$A"', "1"),
        ('"${A}-$SPACED"', "1-x  y"),
        ('"it\'s"', "it's"),
        ("'say \"hi\"'", 'say "hi"'),
        ('"a\\"b"', 'a"b'),
        ('"\\$A"', "$A"),
        ('"a\\\\b"', "a\\b"),
        ('"a\\nb"', "a\\nb"),  # other escapes stay inside double quotes
        ('""', ""),
        ("''", ""),
        ("a'b'c\"d\"e", "abcde"),
        ("\\$A", "$A"),
        ("\\${A}", "${A}"),
        ("\\a\\ b", "a b"),
        ("a\\", "a"),  # an escape at the end is dropped
        ("\\\\", "\\"),
        ("$SPACED", "x  y"),
        ("  keep  spaces  ", "  keep  spaces  "),
    ],
)
def test_expand(word: str, expected: str) -> None:
    assert expand(word, ENV) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("`$A", "$A"),
        ("c:\\path\\$A", "c:\\path\\1"),
        ('"a`"b"', 'a"b'),
        ('"a\\"', "a\\"),
        ("a` b", "a b"),
        ("``", "`"),
    ],
)
def test_expand_with_backtick_escape(word: str, expected: str) -> None:
    assert expand(word, ENV, "`") == expected


def test_deep_nesting_is_our_error() -> None:
    assert expand("${A:-" * 60 + "x" + "}" * 60, {}) == "x"
    with pytest.raises(DockerfileError, match="nested more than 64 deep"):
        expand("${A:-" * 5000 + "x" + "}" * 5000, {})


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("${", "missing '}'"),
        ("${A", "missing '}'"),
        ("${A:-x", "missing '}'"),
        ("${A:-${B}", "missing '}'"),
        ("${}", "bad substitution"),
        ("${:-x}", "bad substitution"),
        ("${{A}}", "bad substitution"),
        ("${A!x}", "unsupported modifier (!)"),
        ("${A:x}", "unsupported modifier (:x)"),
        ("${A x}", "unsupported modifier ( )"),
        ("'open", "matching single-quote"),
        ('"open', "matching double-quote"),
        ('"open\\"', "matching double-quote"),
        ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
        ("${MISSING:?needs a value}", "MISSING: needs a value"),
        ("${MISSING?}", "MISSING: is not allowed to be unset"),
        ("${A/x", "missing '/'"),
        ("${A/x/y", "missing '}'"),
        ("${A#x", "missing '}'"),
    ],
)
def test_expand_errors(word: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=re.escape(message)):
        expand(word, ENV)


FILE = {"F": "/home/tux/book/book.tar.bz2", "STAR": "a*b"}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("${F#*/}", "home/tux/book/book.tar.bz2"),
        ("${F##*/}", "book.tar.bz2"),
        ("${F%.*}", "/home/tux/book/book.tar"),
        ("${F%%.*}", "/home/tux/book/book"),
        ("${F#/home}", "/tux/book/book.tar.bz2"),
        ("${F#nomatch}", "/home/tux/book/book.tar.bz2"),
        ("${F%b?2}", "/home/tux/book/book.tar."),
        ("${F#*}", "/home/tux/book/book.tar.bz2"),  # the shortest match of * is empty
        ("${F##*}", ""),
        ("${F:#*/}", "home/tux/book/book.tar.bz2"),
        ("${MISSING#x}", ""),
        ("${F/tux/wilber}", "/home/wilber/book/book.tar.bz2"),
        ("${F/book/B}", "/home/tux/B/book.tar.bz2"),
        ("${F//book/B}", "/home/tux/B/B.tar.bz2"),
        ("${F//o/}", "/hme/tux/bk/bk.tar.bz2"),
        ("${F/b*k/X}", "/home/tux/X.tar.bz2"),  # the longest match at the first place
        ("${F/nomatch/X}", "/home/tux/book/book.tar.bz2"),
        ("${F/\\//:}", ":home/tux/book/book.tar.bz2"),  # an escaped / in the pattern
        ("${STAR#a\\*}", "b"),  # an escaped * is literal
        ("${STAR/\\*/+}", "a+b"),
        ("${F#$MISSING}", "/home/tux/book/book.tar.bz2"),
    ],
)
def test_pattern_modifiers(word: str, expected: str) -> None:
    assert expand(word, FILE) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80 443/tcp", ["80", "443/tcp"]),
        ("  a\t b  ", ["a", "b"]),
        ("$A $PATH", ["1", "/usr/bin"]),
        ("$SPACED", ["x", "y"]),  # an unquoted expansion splits, as Docker's EXPOSE does
        ('"$SPACED"', ["x  y"]),
        ("'a b' c", ["a b", "c"]),
        ("a\\ b c", ["a b", "c"]),
        ('"" a', ["a"]),  # empty words are dropped
        ("$EMPTY", []),
        ("", []),
        ("pre$SPACED", ["prex", "y"]),
        ("${MISSING:-8080 9090}", ["8080", "9090"]),
    ],
)
def test_expand_words(text: str, expected: list[str]) -> None:
    assert expand_words(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("K=V", [("K", "V")]),
        ("K=V K2=V2", [("K", "V"), ("K2", "V2")]),
        ("K=\"v 2\" K3='$A'", [("K", "v 2"), ("K3", "$A")]),
        ("K=a\\ b", [("K", "a b")]),
        ("K=$A X=${A}0", [("K", "1"), ("X", "10")]),
        ("K=", [("K", "")]),
        ('K=""', [("K", "")]),
        ("K=a=b", [("K", "a=b")]),
        ('"com.example.vendor"="ACME Inc"', [("com.example.vendor", "ACME Inc")]),
        ("$A=x", [("1", "x")]),
        ("K value with  spaces", [("K", "value with  spaces")]),
        ('K  "quoted $A" rest', [("K", "quoted 1 rest")]),
        ("K $PATH:/x", [("K", "/usr/bin:/x")]),
    ],
)
def test_expand_pairs(text: str, expected: list[tuple[str, str]]) -> None:
    assert expand_pairs(text, ENV) == expected


def test_expand_pairs_use_the_env_before_the_instruction() -> None:
    # Docker: `ENV A=2 B=$A` gives B the value A had before this ENV.
    assert expand_pairs("A=2 B=$A", {"A": "1"}) == [("A", "2"), ("B", "1")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "requires at least one argument"),
        ("K", "must have two arguments"),
        ("K=1 L", "can't find = in 'L'"),
        ("=1", "names can not be blank"),
        ("$EMPTY=1", "names can not be blank"),
        ('K="open', "matching double-quote"),
    ],
)
def test_expand_pairs_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=re.escape(message)):
        expand_pairs(text, ENV)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NAME", [("NAME", None)]),
        ("NAME=x", [("NAME", "x")]),
        ("NAME=", [("NAME", "")]),
        ("A B=2 C", [("A", None), ("B", "2"), ("C", None)]),
        ("V=$A-${MISSING:-d}", [("V", "1-d")]),
        ('V="a b"', [("V", "a b")]),
        ("V=a=b", [("V", "a=b")]),
    ],
)
def test_expand_args(text: str, expected: list[tuple[str, str | None]]) -> None:
    assert expand_args(text, ENV) == expected


def test_expand_args_rejects_blank_names() -> None:
    with pytest.raises(DockerfileError, match="ARG names can not be blank"):
        expand_args("=x", ENV)


def test_escape_parameter_reaches_every_splitter() -> None:
    assert expand_words("a` b c", ENV, "`") == ["a b", "c"]
    assert expand_pairs("K=a` b", ENV, "`") == [("K", "a b")]
    assert expand_args("K=c:\\x", ENV, "`") == [("K", "c:\\x")]
