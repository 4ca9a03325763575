"""`.dockerignore` rules: which paths of a build context are left out.

Owns Docker's pattern language (Go's filepath.Match per path component, plus `**` for any number of
directories), reading an ignore file (comments, blank lines, path cleaning, `!` exceptions with
last-match-wins) and the two questions the context walk asks: is this path ignored, and can anything
below this ignored directory still be included.

Where Docker's reference is silent we choose, and say so: `**` as a whole component matches any
number of directories (zero included), but `dir/**` matches only what is inside dir; `**` inside a
name (`a**b`) is a plain `*`; a class may be negated with `^` (Go) or `!` (shell habit).
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from paas.errors import BuildError

IGNORE_FILE = ".dockerignore"
_BOM = "\ufeff"
_MAGIC = frozenset("*?[\\")

Matcher = Callable[[str], bool]
# A segment of a pattern: a matcher for one path component, or None for `**` (any number of components).
Segment = Matcher | None


def clean_path(path: str) -> str:
    """Go's path.Clean: drop empty and `.` elements, resolve `..` lexically, no trailing slash."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for name in path.split("/"):
        if name in ("", "."):
            continue
        if name != "..":
            parts.append(name)
        elif parts and parts[-1] != "..":
            parts.pop()
        elif not rooted:
            parts.append("..")
    text = "/".join(parts)
    if rooted:
        return "/" + text
    return text or "."


def has_magic(component: str) -> bool:
    """True when a path component holds glob syntax (and so needs a matcher, not a string compare)."""
    return not _MAGIC.isdisjoint(component)


def compile_component(component: str) -> Matcher:
    """A matcher for one path component in Go's filepath.Match syntax; ValueError on a bad pattern.

    `**` inside a component is just `*` (gitignore's reading; Go's Match sees two stars too).
    """
    if not has_magic(component):
        return functools.partial(operator.eq, component)
    regex = re.compile(_translate(component), re.DOTALL)
    return lambda name: regex.fullmatch(name) is not None


def _translate(component: str) -> str:
    """The regex of one component: `*` any run, `?` one character, `[...]` a class, `\\` escapes.

    Nothing in it matches `/`, so components can be joined into a regex for a whole path.
    """
    out: list[str] = []
    i = 0
    while i < len(component):
        char = component[i]
        if char == "*":
            while i + 1 < len(component) and component[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            text, i = _translate_class(component, i + 1)
            out.append(text)
            continue
        elif char == "\\" and i + 1 < len(component):
            i += 1
            out.append(re.escape(component[i]))
        else:
            # A trailing backslash stays literal, as Docker's matcher leaves it.
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _translate_class(component: str, i: int) -> tuple[str, int]:
    """A `[...]` class starting after its `[`; returns the regex and the index after the `]`."""
    negate = i < len(component) and component[i] in "^!"
    if negate:
        # Go knows only `^`; `!` is accepted too because shell users write it (the team's rule).
        i += 1
    ranges: list[str] = []
    while i >= len(component) or component[i] != "]" or not ranges:
        low, i = _class_char(component, i)
        high = low
        if i < len(component) and component[i] == "-":
            high, i = _class_char(component, i + 1)
            if high < low:
                raise ValueError(f"range {low}-{high} is reversed")
        ranges.append(re.escape(low) if low == high else f"{re.escape(low)}-{re.escape(high)}")
    if negate:
        ranges.append("/")
    return "[" + ("^" if negate else "") + "".join(ranges) + "]", i + 1


def _class_char(component: str, i: int) -> tuple[str, int]:
    """One character of a class, as Go reads it: `-` and `]` must be escaped, the class must close."""
    if i >= len(component):
        raise ValueError("unterminated character class")
    char = component[i]
    if char in "-]":
        raise ValueError(f"unexpected {char!r} in character class")
    if char == "\\":
        if i + 1 >= len(component):
            raise ValueError("unterminated character class")
        return component[i + 1], i + 2
    return char, i + 1


def _segments(pattern: str) -> tuple[Segment, ...]:
    """A cleaned pattern as per-component segments; a whole `**` component becomes None."""
    names = pattern.split("/")
    segments: list[Segment] = [None if name == "**" else compile_component(name) for name in names]
    if len(names) > 1 and names[-1] == "**":
        # `dir/**` matches what is inside dir, not dir itself (Docker's and gitignore's reading).
        segments[-1:] = [_any_component, None]
    return tuple(segments)


def _any_component(name: str) -> bool:
    return True


def _path_regex(pattern: str) -> re.Pattern[str]:
    """One regex for a whole cleaned pattern that also matches every path below a match.

    The same language as `_segments`, compiled for speed: the walk asks it about every entry.
    """
    names = pattern.split("/")
    out: list[str] = []
    for index, name in enumerate(names):
        last = index == len(names) - 1
        if name == "**":
            out.append(".+" if last else "(?:[^/]+/)*")
        else:
            out.append(_translate(name) + ("" if last else "/"))
    return re.compile("".join(out) + r"(?:/.*)?\Z", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Pattern:
    """One line of an ignore file, cleaned; `exception` for a `!` line."""

    text: str
    exception: bool
    segments: tuple[Segment, ...]  # per component, for the "could it match below?" question
    regex: re.Pattern[str]  # the whole path, for the "does it match?" question

    def matches(self, rel: str) -> bool:
        """True when the pattern matches the path `rel` or one of its parent directories."""
        return self.regex.match(rel) is not None

    def may_match_below(self, parts: Sequence[str]) -> bool:
        """True when some path strictly below `parts` could match (or `parts` or a parent does)."""
        states = self._close({0})
        for name in parts:
            states = self._step(states, name)
            if len(self.segments) in states:
                return True
        return any(state < len(self.segments) for state in states)

    def _step(self, states: set[int], name: str) -> set[int]:
        following: set[int] = set()
        for state in states:
            if state == len(self.segments):
                continue
            segment = self.segments[state]
            if segment is None:
                following.add(state)
            elif segment(name):
                following.add(state + 1)
        return self._close(following)

    def _close(self, states: set[int]) -> set[int]:
        """Add the states reachable by letting a `**` match zero components."""
        for state in range(len(self.segments)):
            if state in states and self.segments[state] is None:
                states.add(state + 1)
        return states


def parse_pattern(line: str) -> Pattern | None:
    """One ignore-file line as a Pattern, None for a comment or blank; ValueError when malformed."""
    if line.startswith("#"):
        # Docker drops comments before trimming: only `#` in column 1 starts one.
        return None
    text = line.strip()
    if not text:
        return None
    exception = text.startswith("!")
    if exception:
        text = text[1:].strip()
        if not text:
            raise ValueError("an exception `!` needs a pattern")
    text = clean_path(text)
    if len(text) > 1 and text.startswith("/"):
        text = text[1:]
    return Pattern(text, exception, _segments(text), _path_regex(text))


class IgnoreRules:
    """The patterns of one ignore file, applied in order; the last one that matches a path decides."""

    __slots__ = ("patterns",)

    def __init__(self, patterns: Sequence[Pattern] = ()) -> None:
        self.patterns = tuple(patterns)

    def __repr__(self) -> str:
        lines = [("!" if p.exception else "") + p.text for p in self.patterns]
        return f"IgnoreRules({lines!r})"

    @classmethod
    def parse(cls, text: str, source: str = IGNORE_FILE) -> IgnoreRules:
        patterns = []
        for number, line in enumerate(text.removeprefix(_BOM).split("\n"), start=1):
            try:
                pattern = parse_pattern(line.removesuffix("\r"))
            except ValueError as exc:
                raise BuildError(f"{source} line {number}: bad pattern {line.strip()!r}: {exc}") from None
            if pattern is not None:
                patterns.append(pattern)
        return cls(patterns)

    @classmethod
    def load(cls, context: Path, dockerfile: str = "Dockerfile") -> IgnoreRules:
        """`<dockerfile>.dockerignore` next to the Dockerfile wins over `<context>/.dockerignore`."""
        named = Path(dockerfile) if Path(dockerfile).is_absolute() else context / dockerfile
        for candidate in (named.with_name(named.name + IGNORE_FILE), context / IGNORE_FILE):
            if candidate.is_file():
                try:
                    text = candidate.read_bytes().decode("utf-8", "surrogateescape")
                except OSError as exc:
                    raise BuildError(f"cannot read {candidate}: {exc}") from None
                return cls.parse(text, candidate.name)
        return cls()

    def ignored(self, rel: str) -> bool:
        """True when the context path `rel` (clean, posix, relative to the root) is left out."""
        if not self.patterns or rel in ("", "."):
            return False
        excluded = False
        for pattern in self.patterns:
            # A pattern can only change the verdict when it would flip it.
            if pattern.exception == excluded and pattern.matches(rel):
                excluded = not excluded
        return excluded

    def may_include_below(self, rel_dir: str) -> bool:
        """False when nothing below `rel_dir` can be included, so a walk may skip the whole directory."""
        if not self.patterns or rel_dir in ("", "."):
            return True
        parts = rel_dir.split("/")
        last, excluded = -1, False
        for index, pattern in enumerate(self.patterns):
            if pattern.matches(rel_dir):
                last, excluded = index, not pattern.exception
        if not excluded:
            return True
        # Patterns up to `last` also match every path below rel_dir, and `last` excludes them:
        # only a later exception that reaches below rel_dir can bring something back.
        return any(p.exception and p.may_match_below(parts) for p in self.patterns[last + 1:])
