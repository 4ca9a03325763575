"""IgnoreRules: Docker's `.dockerignore` pattern rules, table-driven from the reference's examples."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paas.engine.dockerfile.ignore import IgnoreRules, clean_path, compile_component
from paas.errors import BuildError

# (ignore file, path, ignored?) -- the first rows are the examples of Docker's build-context reference.
CASES = [
    ("*/temp*", "somedir/temporary.txt", True),
    ("*/temp*", "somedir/temp", True),
    ("*/temp*", "somedir/temp/inside.txt", True),
    ("*/temp*", "temporary.txt", False),
    ("*/temp*", "a/b/temporary.txt", False),
    ("*/*/temp*", "somedir/subdir/temporary.txt", True),
    ("*/*/temp*", "somedir/temporary.txt", False),
    ("temp?", "tempa", True),
    ("temp?", "tempb", True),
    ("temp?", "temp", False),
    ("temp?", "tempab", False),
    ("temp?", "dir/tempa", False),
    ("**/*.go", "main.go", True),
    ("**/*.go", "pkg/sub/util.go", True),
    ("**/*.go", "main.go.txt", False),
    ("**/*.go", "pkg/go", False),
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README.md", "CHANGES.md", True),
    ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
    ("*.md\n!README*.md\nREADME-secret.md", "README-public.md", False),
    ("*.md\n!README*.md\nREADME-secret.md", "other.md", True),
    ("*.md\nREADME-secret.md\n!README*.md", "README-secret.md", False),
    ("*.md\nREADME-secret.md\n!README*.md", "other.md", True),
    ("*.md", "docs/guide.md", False),  # no implicit `**/`: Docker anchors patterns at the root
    # A pattern that matches a directory excludes everything below it; a later `!` brings files back.
    ("dir", "dir", True),
    ("dir", "dir/a/b.txt", True),
    ("dir\n!dir/keep", "dir/keep", False),
    ("dir\n!dir/keep", "dir/keep/inner.txt", False),
    ("dir\n!dir/keep", "dir/drop", True),
    ("dir\n!dir/keep\ndir", "dir/keep", True),
    ("*\n!src", "src/app/main.py", False),
    ("*\n!src", "docs/index.md", True),
    ("*\n!src", "Dockerfile", True),
    ("*\n!/src/", "src/x", False),
    # Comments and blank lines; `#` starts a comment only in column 1.
    ("# comment\n\n   \nsecret", "# comment", False),
    ("# comment\n\n   \nsecret", "secret", True),
    (" #notacomment", "#notacomment", True),
    ("\\#hash", "#hash", True),
    # Cleaning: leading and trailing slashes, `./`, `//`, `..`, surrounding whitespace.
    ("/foo/bar", "foo/bar", True),
    ("/foo/bar", "x/foo/bar", False),
    ("/foo/bar", "foo", False),
    ("build/", "build", True),
    ("build/", "build/out.o", True),
    ("./a//b/", "a/b", True),
    ("a/../b", "b", True),
    ("a/../b", "a", False),
    ("  spaced  ", "spaced", True),
    ("! kept\nkept", "kept", True),
    ("*\n! kept", "kept", False),
    ("../outside", "outside", False),
    ("/", "anything", False),
    # `**`: any number of directories, including none; `dir/**` is what is inside dir.
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y/c", False),
    ("a/**", "a/x", True),
    ("a/**", "a/x/y", True),
    ("a/**", "a", False),
    ("**", "anything/at/all", True),
    ("**/vendor", "vendor", True),
    ("**/vendor", "x/y/vendor/lib.go", True),
    ("**/vendor/**/*.o", "vendor/a.o", True),
    ("**/vendor/**/*.o", "src/vendor/x/y/a.o", True),
    ("**/vendor/**/*.o", "src/vendor/x/y/a.c", False),
    ("a**c", "abc", True),  # `**` inside a name is just `*` (gitignore's rule), it never crosses `/`
    ("a**c", "ab/c", False),
    # Go filepath.Match syntax: `?`, `*` never cross `/`, classes, ranges, negation, escapes.
    ("?.txt", "a.txt", True),
    ("?.txt", "ab.txt", False),
    ("*", "a", True),
    ("*", ".hidden", True),
    ("*.txt", "dir/a.txt", False),
    ("[abc].txt", "b.txt", True),
    ("[abc].txt", "d.txt", False),
    ("[a-c]x", "cx", True),
    ("[a-c]x", "dx", False),
    ("[^a-c]x", "dx", True),
    ("[^a-c]x", "ax", False),
    ("[!a-c]x", "dx", True),
    ("[!a-c]x", "bx", False),
    ("[\\]]x", "]x", True),
    ("[\\-]x", "-x", True),
    ("[a\\-z]x", "bx", False),
    ("\\*", "*", True),
    ("\\*", "a", False),
    ("\\?", "?", True),
    ("\\[x]", "[x]", True),
    ("a.b", "aXb", False),  # regex characters are literal
    ("a+(b)", "a+(b)", True),
    ("\ufeffbom", "bom", True),
    ("crlf\r\nother", "crlf", True),
]


@pytest.mark.parametrize(("text", "path", "expected"), CASES)
def test_ignored(text: str, path: str, expected: bool) -> None:
    assert IgnoreRules.parse(text).ignored(path) is expected


def test_root_is_never_ignored() -> None:
    rules = IgnoreRules.parse("*\n**\n.")
    assert not rules.ignored(".")
    assert not rules.ignored("")


def test_empty_rules_ignore_nothing() -> None:
    rules = IgnoreRules.parse("# only a comment\n\n")
    assert rules.patterns == ()
    assert not rules.ignored("anything/at/all")
    assert rules.may_include_below("anything")


# (ignore file, directory, may something below it be included?)
BELOW = [
    ("dir", "dir", False),
    ("dir", "other", True),
    ("dir\n!dir/keep", "dir", True),
    ("dir\n!dir/keep", "dir/sub", False),
    ("dir\n!dir/keep\ndir", "dir", False),  # the last `dir` wins over the exception for everything below
    ("dir\n!other/keep", "dir", False),
    ("*\n!*/keep", "anydir", True),
    ("*\n!**/keep", "a", True),
    ("**/vendor\n!**/vendor/keep.txt", "x/y/vendor", True),
    ("**/vendor\n!**/vendor/keep.txt", "x/vendor/deeper", True),  # x/vendor/deeper/vendor/keep.txt
    ("**/vendor\n!x/vendor/keep.txt", "x/vendor", True),
    ("**/vendor\n!x/vendor/keep.txt", "x/vendor/deeper", False),
    ("**/vendor\n!x/vendor/keep.txt", "y/vendor", False),
    ("dir/**\n!dir/a/*.txt", "dir/a", True),
    ("dir/**\n!dir/a/*.txt", "dir/b", False),
    ("dir\n!dir", "dir", True),  # not ignored at all
    ("*\n!src/**", "src", True),
    ("*\n!src/**", "docs", False),
]


@pytest.mark.parametrize(("text", "directory", "expected"), BELOW)
def test_may_include_below(text: str, directory: str, expected: bool) -> None:
    assert IgnoreRules.parse(text).may_include_below(directory) is expected


@pytest.mark.parametrize(("text", "directory", "below"), [
    ("dir\n!dir/keep", "dir", "dir/keep"),
    ("*\n!*/keep", "anydir", "anydir/keep"),
    ("**/vendor\n!**/vendor/keep.txt", "x/y/vendor", "x/y/vendor/keep.txt"),
])
def test_may_include_below_agrees_with_ignored(text: str, directory: str, below: str) -> None:
    rules = IgnoreRules.parse(text)
    assert rules.ignored(directory)
    assert not rules.ignored(below)
    assert rules.may_include_below(directory)


@pytest.mark.parametrize(("line", "problem"), [
    ("[", "unterminated"),
    ("a[]", "unexpected"),
    ("[a-", "unterminated"),
    ("[z-a]", "reversed"),
    ("[a-]", "unexpected"),
    ("[\\", "unterminated"),
    ("!", "needs a pattern"),
    ("!   ", "needs a pattern"),
])
def test_bad_patterns_name_the_line(line: str, problem: str) -> None:
    with pytest.raises(BuildError, match=rf"\.dockerignore line 3: bad pattern .*{problem}"):
        IgnoreRules.parse(f"# c\nok\n{line}\n")


@pytest.mark.parametrize(("path", "cleaned"), [
    ("", "."), (".", "."), ("./", "."), ("a/", "a"), ("/a//b/./c/", "/a/b/c"), ("a/../..", ".."),
    ("/../a", "/a"), ("a/b/../../c", "c"), ("//x", "/x"), ("../../a", "../../a"),
])
def test_clean_path_follows_go(path: str, cleaned: str) -> None:
    assert clean_path(path) == cleaned


def test_compile_component_is_literal_without_magic() -> None:
    assert compile_component("a.b")("a.b")
    assert not compile_component("a.b")("aXb")
    assert compile_component("*.py")("x.py")
    assert not compile_component("*.py")("x.pyc")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_load_prefers_the_dockerfile_specific_file(tmp_path: Path) -> None:
    _write(tmp_path / ".dockerignore", "root-rule\n")
    _write(tmp_path / "Dockerfile.dockerignore", "specific-rule\n")
    rules = IgnoreRules.load(tmp_path)
    assert rules.ignored("specific-rule")
    assert not rules.ignored("root-rule")


def test_load_uses_the_file_next_to_a_dockerfile_given_with_f(tmp_path: Path) -> None:
    _write(tmp_path / ".dockerignore", "root-rule\n")
    _write(tmp_path / "build" / "app.Dockerfile.dockerignore", "app-rule\n")
    rules = IgnoreRules.load(tmp_path, "build/app.Dockerfile")
    assert rules.ignored("app-rule")
    assert not rules.ignored("root-rule")
    # A Dockerfile without its own ignore file falls back to the root one.
    other = IgnoreRules.load(tmp_path, "build/other.Dockerfile")
    assert other.ignored("root-rule")
    absolute = IgnoreRules.load(tmp_path, str(tmp_path / "build" / "app.Dockerfile"))
    assert absolute.ignored("app-rule")


def test_load_without_any_ignore_file(tmp_path: Path) -> None:
    assert IgnoreRules.load(tmp_path).patterns == ()


def test_load_reports_a_bad_pattern_with_the_file_name(tmp_path: Path) -> None:
    _write(tmp_path / "Dockerfile.dockerignore", "ok\n[broken\n")
    with pytest.raises(BuildError, match=r"Dockerfile\.dockerignore line 2: bad pattern '\[broken'"):
        IgnoreRules.load(tmp_path)


# -- properties: pruning is sound, and the matchers agree with a plain recursive reading of the rules --

_PATTERN_NAMES = st.sampled_from(["a", "b", "*", "**", "?", "[ab]", "a*", "[!a]"])
_PATH_NAMES = st.sampled_from(["a", "b", "ab", "ba"])
Lines = list[tuple[bool, list[str]]]
_LINES = st.lists(
    st.tuples(st.booleans(), st.lists(_PATTERN_NAMES, min_size=1, max_size=3)), min_size=1, max_size=4)
_PATHS = st.lists(_PATH_NAMES, min_size=1, max_size=4)


def _rules(lines: Lines) -> IgnoreRules:
    return IgnoreRules.parse("\n".join(("!" if bang else "") + "/".join(names) for bang, names in lines))


def _reference_full(names: list[str], parts: list[str]) -> bool:
    """The documented language, read directly: `**` is any number of directories (a trailing one: 1+)."""
    if not names:
        return not parts
    if names[0] == "**":
        if len(names) == 1:
            return bool(parts)
        return any(_reference_full(names[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and compile_component(names[0])(parts[0]) and _reference_full(names[1:], parts[1:])


def _reference(text: str, parts: list[str]) -> bool:
    """A pattern matches a path when it matches the path or one of its parent directories."""
    return any(_reference_full(text.split("/"), parts[:k]) for k in range(1, len(parts) + 1))


@settings(max_examples=400, deadline=None)
@given(_LINES, _PATHS)
def test_pruned_directories_hold_nothing_included(lines: Lines, path: list[str]) -> None:
    rules = _rules(lines)
    for depth in range(1, len(path)):
        directory = "/".join(path[:depth])
        if not rules.may_include_below(directory):
            assert rules.ignored("/".join(path)), (rules, directory)


@settings(max_examples=400, deadline=None)
@given(_LINES, _PATHS)
def test_matchers_agree_with_the_reference(lines: Lines, path: list[str]) -> None:
    for pattern in _rules(lines).patterns:
        expected = _reference(pattern.text, path)
        assert pattern.matches("/".join(path)) is expected, (pattern.text, path)
        if expected and not _reference(pattern.text, path[:-1]):
            assert pattern.may_match_below(path[:-1]), (pattern.text, path)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab*?[]^!-\\/.# \n", max_size=40), _PATHS)
def test_any_text_parses_or_fails_with_our_error(text: str, path: list[str]) -> None:
    try:
        rules = IgnoreRules.parse(text)
    except BuildError as exc:
        assert "bad pattern" in str(exc)
        return
    directory = "/".join(path)
    assert isinstance(rules.ignored(directory), bool)
    assert isinstance(rules.may_include_below(directory), bool)
