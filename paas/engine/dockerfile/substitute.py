"""Docker's word processing: quotes, the escape character and variable substitution.

Follows the Dockerfile reference's rules (BuildKit's shell lexer): `'...'` is literal, `"..."`
expands `$` and lets the escape char escape `"`, `$` and itself; outside quotes the escape char
makes the next character literal. `$v`, `${v}`, `${v:-w}`, `${v:+w}`, `${v-w}`, `${v+w}`,
`${v:?w}`, `${v?w}`, with nested words in `w`. An unset variable is empty.
Errors are DockerfileError without a line: the caller knows the instruction and adds it.
"""

from __future__ import annotations

from collections.abc import Mapping

from paas.engine.dockerfile.lexer import DEFAULT_ESCAPE, split_fields, split_words
from paas.errors import DockerfileError

__all__ = ["expand", "expand_args", "expand_pairs", "expand_words"]

# Python recursion, not the input, would otherwise set the limit (a RecursionError, not ours).
MAX_NESTING = 64
# POSIX special parameters: `$$`, `$#`... are names of their own, empty here like in Docker.
_SPECIAL = frozenset("@*#?-$!")


def expand(word: str, env: Mapping[str, str], escape: str = DEFAULT_ESCAPE) -> str:
    """One word, substituted, quotes and escapes removed; whitespace kept as is."""
    return _Lexer(word, env, escape).run()[0]


def expand_words(text: str, env: Mapping[str, str], escape: str = DEFAULT_ESCAPE) -> list[str]:
    """Split on unquoted whitespace and expand; an unquoted `$v` holding spaces splits too.

    That is Docker's word rule for EXPOSE; empty words (`""`) are dropped.
    """
    return _Lexer(text, env, escape).run()[1]


def expand_pairs(text: str, env: Mapping[str, str], escape: str = DEFAULT_ESCAPE) -> list[tuple[str, str]]:
    """ENV / LABEL arguments: `K=V K2="v 2"`, or the legacy `K value with spaces`.

    Every key and value is expanded against the same `env`, as Docker does within one instruction.
    """
    words = split_words(text, escape)
    if not words:
        raise DockerfileError("requires at least one argument")
    if "=" not in words[0]:
        fields = split_fields(text)
        if len(fields) < 2:
            raise DockerfileError("must have two arguments (name value)")
        value = text.strip()[len(fields[0]) :].strip()
        return [_pair(fields[0], value, env, escape)]
    pairs: list[tuple[str, str]] = []
    for word in words:
        key, has_value, value = word.partition("=")
        if not has_value:
            raise DockerfileError(f"can't find = in {word!r}: must be of the form name=value")
        pairs.append(_pair(key, value, env, escape))
    return pairs


def _pair(key: str, value: str, env: Mapping[str, str], escape: str) -> tuple[str, str]:
    name = expand(key, env, escape)
    if not name:
        raise DockerfileError(f"names can not be blank: {key!r}")
    return name, expand(value, env, escape)


def expand_args(
    text: str, env: Mapping[str, str], escape: str = DEFAULT_ESCAPE
) -> list[tuple[str, str | None]]:
    """ARG arguments: `NAME` or `NAME=default`, several allowed; None when there is no default."""
    result: list[tuple[str, str | None]] = []
    for word in split_words(text, escape):
        key, has_value, value = word.partition("=")
        name = expand(key, env, escape)
        if not name:
            raise DockerfileError(f"ARG names can not be blank: {word!r}")
        result.append((name, expand(value, env, escape) if has_value else None))
    return result


class _Words:
    """Collects words: whitespace from quotes and escapes is kept, other whitespace splits."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.current: list[str] = []

    def raw(self, text: str) -> None:
        self.current.extend(text)

    def split(self, text: str) -> None:
        for ch in text:
            if ch.isspace():
                self.flush()
            else:
                self.current.append(ch)

    def flush(self) -> None:
        if self.current:
            self.words.append("".join(self.current))
            self.current = []


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text, self.env, self.escape = text, env, escape
        self.pos = 0
        self.depth = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        ch = self.peek()
        self.pos += 1 if ch else 0
        return ch

    def run(self) -> tuple[str, list[str]]:
        words = _Words()
        out = self._until("", words)
        words.flush()
        return out, words.words

    def _until(self, stop: str, words: _Words | None = None, raw: bool = False) -> str:
        """Process up to `stop` (not consumed) or the end; feed `words` when splitting.

        `raw` keeps escapes, for the patterns of `${v#p}` and `${v/p/r}` where they mark literals.
        """
        out: list[str] = []
        while self.peek() and self.peek() != stop:
            ch = self.peek()
            if ch == "$":
                out.append(self._dollar())
                if words is not None:
                    words.split(out[-1])  # an unquoted expansion splits into words
                continue
            if ch in "'\"":
                out.append(self._single() if ch == "'" else self._double())
                if words is not None:
                    words.raw(out[-1])
                continue
            self.take()
            if ch == self.escape:
                if raw:
                    out.append(ch)
                ch = self.take()
                if not ch:
                    break
                if words is not None:
                    words.raw(ch)
            elif words is not None:
                words.split(ch)
            out.append(ch)
        return "".join(out)

    def _word(self, stop: str = "}", raw: bool = False) -> str:
        word = self._until(stop, raw=raw)
        if self.take() != stop:
            raise DockerfileError(f"syntax error: missing '{stop}' in {self.text!r}")
        return word

    def _single(self) -> str:
        self.take()
        end = self.text.find("'", self.pos)
        if end < 0:
            raise DockerfileError(
                f"unexpected end of statement while looking for matching single-quote in {self.text!r}"
            )
        piece, self.pos = self.text[self.pos : end], end + 1
        return piece

    def _double(self) -> str:
        self.take()
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise DockerfileError(
                    f"unexpected end of statement while looking for matching double-quote in {self.text!r}"
                )
            if ch == '"':
                self.take()
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            self.take()
            # Inside double quotes the escape char escapes only `"`, `$` and itself.
            if ch == self.escape and self.peek() and self.peek() in ('"', "$", self.escape):
                ch = self.take()
            out.append(ch)

    def _dollar(self) -> str:
        self.depth += 1
        try:
            return self._substitution()
        finally:
            self.depth -= 1

    def _substitution(self) -> str:
        if self.depth > MAX_NESTING:
            raise DockerfileError(f"substitutions nested more than {MAX_NESTING} deep in {self.text[:80]!r}")
        self.take()
        if self.peek() != "{":
            name = self._name()
            return self.env.get(name, "") if name else "$"
        self.take()
        first = self.peek()
        if not first:
            raise DockerfileError(f"syntax error: missing '}}' in {self.text!r}")
        if first in "{}:":
            raise DockerfileError(f"syntax error: bad substitution in {self.text!r}")
        name = self._name()
        ch = self.take()
        if ch == "}":
            return self.env.get(name, "")
        if ch == "/":
            return self._replace(self.env.get(name, ""))
        colon = ch == ":"
        modifier = self.take() if colon else ch
        if not modifier:
            raise DockerfileError(f"syntax error: missing '}}' in {self.text!r}")
        if modifier in "#%":
            return self._trim(self.env.get(name, ""), modifier)
        if modifier not in "-+?":
            raise DockerfileError(
                f"unsupported modifier ({ch}{modifier if colon else ''}) in substitution in {self.text!r}"
            )
        return self._modify(name, colon, modifier, self._word())

    def _modify(self, name: str, colon: bool, modifier: str, word: str) -> str:
        value = self.env.get(name)
        # With a colon an empty value counts as unset, as in the POSIX shell.
        present = value is not None and (bool(value) or not colon)
        if modifier == "-":
            return value if present and value is not None else word
        if modifier == "+":
            return word if present else ""
        if present and value is not None:
            return value
        default = "is not allowed to be unset" if value is None else "is not allowed to be empty"
        raise DockerfileError(f"{name}: {word or default}")

    def _trim(self, value: str, modifier: str) -> str:
        """`${v#p}` `${v##p}` drop the shortest/longest prefix matching p; `%` `%%` a suffix."""
        pattern = self._word(raw=True)
        longest = pattern.startswith(modifier)
        tokens = _glob(pattern[1:] if longest else pattern, self.escape)
        if modifier == "#":
            ends = _match_ends(tokens, value)
            return value[(max if longest else min)(ends) :] if ends else value
        ends = _match_ends(tokens[::-1], value[::-1])
        return value[: len(value) - (max if longest else min)(ends)] if ends else value

    def _replace(self, value: str) -> str:
        """`${v/p/r}` replaces the first longest match of p, `${v//p/r}` every one."""
        every = self.peek() == "/"
        if every:
            self.take()
        tokens = _glob(self._word("/", raw=True), self.escape)
        replacement = self._word()
        out: list[str] = []
        pos = 0
        while pos < len(value):
            ends = _match_ends(tokens, value, pos)
            end = max(ends) if ends else pos
            if end == pos:
                out.append(value[pos])
                pos += 1
                continue
            out.append(replacement)
            pos = end
            if not every:
                break
        return "".join(out) + value[pos:]

    def _name(self) -> str:
        start = self.pos
        first = self.peek()
        if first.isdecimal():
            while self.peek().isdecimal():
                self.take()
            return self.text[start : self.pos]
        if first and first in _SPECIAL:
            return self.take()
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.take()
        return self.text[start : self.pos]


def _glob(pattern: str, escape: str) -> list[str]:
    """A shell pattern as tokens: "*", "?" or an escaped literal ("\\x"); brackets are literal too."""
    tokens: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == escape:
            tokens.append("\\" + next(chars, ""))
        elif ch in "*?":
            tokens.append(ch)
        else:
            tokens.append("\\" + ch)
    return tokens


def _match_ends(tokens: list[str], text: str, start: int = 0) -> list[int]:
    """Every end such that text[start:end] matches the whole pattern.

    A walk over the pattern's states (no backtracking), so a hostile pattern stays linear per char.
    """

    def closure(states: set[int]) -> set[int]:
        result = set(states)
        for state in sorted(states):
            while state < len(tokens) and tokens[state] == "*":
                state += 1
                result.add(state)
        return result

    states = closure({0})
    ends = [start] if len(tokens) in states else []
    for pos in range(start, len(text)):
        ch = text[pos]
        moved = {
            s + (0 if tokens[s] == "*" else 1)
            for s in states
            if s < len(tokens) and (tokens[s] in ("*", "?") or tokens[s][1:] == ch)
        }
        states = closure(moved)
        if not states:
            break
        if len(tokens) in states:
            ends.append(pos + 1)
    return ends
