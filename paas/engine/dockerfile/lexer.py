"""Dockerfile text into logical lines and their pieces, as Docker's parser reads them.

Owns the physical-to-logical line step (BOM, CRLF, parser directives, comments, continuations with
the escape character) and the small splitters the parser needs: the keyword and its leading
`--flags`, quote-aware words, and the JSON (exec) form.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from paas.errors import DockerfileError

DEFAULT_ESCAPE = "\\"
ESCAPES = frozenset({"\\", "`"})
DIRECTIVES = frozenset({"escape", "syntax", "check"})
# Go's \s is ASCII-only; Docker's directive pattern uses it.
_DIRECTIVE = re.compile(r"^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$")
_COMMAND_SPACE = re.compile(r"[\t\v\f\r ]+")
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class LogicalLine:
    line: int  # first physical line
    text: str  # continuation lines joined, comments inside the continuation dropped


@dataclass(frozen=True, slots=True)
class Source:
    escape: str
    lines: tuple[LogicalLine, ...]


def read_source(text: str, filename: str) -> Source:
    """Split a Dockerfile into logical lines, honouring the parser directives at its top."""
    physical = [_chomp(raw) for raw in text.removeprefix(_BOM).split("\n")]
    escape, first = _directives(physical, filename)
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")
    result: list[LogicalLine] = []
    index = first
    while index < len(physical):
        start = index
        line = physical[index].lstrip()
        index += 1
        if _is_comment(line):
            continue
        line, more = _trim_continuation(line, continuation)
        if not more and not line:
            continue
        while more and index < len(physical):
            raw = physical[index]
            index += 1
            # Comment and blank lines inside a continuation are skipped (Docker warns on blanks).
            if _is_comment(raw) or not raw.strip():
                continue
            piece, more = _trim_continuation(raw, continuation)
            line += piece
        result.append(LogicalLine(start + 1, line))
    return Source(escape, tuple(result))


def _chomp(raw: str) -> str:
    return raw[:-1] if raw.endswith("\r") else raw


def _is_comment(raw: str) -> bool:
    return raw.lstrip().startswith("#")


def _trim_continuation(line: str, continuation: re.Pattern[str]) -> tuple[str, bool]:
    match = continuation.search(line)
    if match is None:
        return line, False
    return line[: match.start()], True


def _directives(physical: list[str], filename: str) -> tuple[str, int]:
    """Read `# key=value` lines at the very top; return the escape char and the first line after."""
    escape, seen = DEFAULT_ESCAPE, set[str]()
    for index, raw in enumerate(physical):
        match = _DIRECTIVE.match(raw.lstrip())
        if match is None or match.group(1).lower() not in DIRECTIVES:
            return escape, index
        key, value = match.group(1).lower(), match.group(2)
        if key in seen:
            raise DockerfileError(f"{filename} line {index + 1}: only one {key} parser directive can be used")
        seen.add(key)
        if key == "escape":
            if value not in ESCAPES:
                raise DockerfileError(
                    f"{filename} line {index + 1}: invalid escape token {value!r}: it must be ` or \\"
                )
            escape = value
    return escape, len(physical)


def split_command(text: str) -> tuple[str, list[str], str]:
    """A logical line into (keyword as written, flag words, the rest after the flags)."""
    parts = _COMMAND_SPACE.split(text.strip(), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    rest, flags = extract_flags(parts[1])
    return parts[0], flags, rest.strip()


def extract_flags(text: str) -> tuple[str, list[str]]:
    """Leading words that start with `--` (quotes and backslashes removed), and the rest.

    A lone `--` ends the flags. Like Docker, a backslash escapes here whatever the escape char.
    """
    words: list[str] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if not text.startswith("--", pos):
            return text[pos:], words
        word, quoted, pos = _flag_word(text, pos)
        if word == "--":
            return text[pos:], words
        if word or quoted:
            words.append(word)


def _flag_word(text: str, pos: int) -> tuple[str, bool, int]:
    chars: list[str] = []
    quote, quoted = "", False
    while pos < len(text):
        ch = text[pos]
        pos += 1
        if not quote and ch.isspace():
            break
        if not quote and ch in "'\"":
            quote, quoted = ch, True
            continue
        if quote and ch == quote:
            quote = ""
            continue
        if ch == "\\":
            if pos == len(text):
                break
            ch = text[pos]
            pos += 1
        chars.append(ch)
    return "".join(chars), quoted, pos


def split_words(text: str, escape: str = DEFAULT_ESCAPE) -> list[str]:
    """Split on whitespace outside quotes, keeping quotes and escapes in the words.

    Docker's word splitter for ENV, LABEL and ARG: the words are substituted later.
    """
    words: list[str] = []
    chars: list[str] = []
    quote, in_word, blank_ok = "", False, False
    pos = 0
    while pos < len(text):
        ch = text[pos]
        pos += 1
        if not quote and ch.isspace():
            if in_word and (chars or blank_ok):
                words.append("".join(chars))
            chars, in_word, blank_ok = [], False, False
            continue
        in_word = True
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote, blank_ok = ch, True
        if ch == escape and quote != "'":
            if pos == len(text):
                break
            chars.append(ch)
            ch = text[pos]
            pos += 1
        chars.append(ch)
    if in_word and (chars or blank_ok):
        words.append("".join(chars))
    return words


def split_fields(text: str) -> list[str]:
    """Whitespace split without quote handling (Docker's FROM, EXPOSE and shell-form COPY)."""
    return [w for w in _COMMAND_SPACE.split(text.strip()) if w]


def parse_exec_form(args: str) -> tuple[str, ...] | None:
    """The JSON array of strings that `args` is, or None when it is not JSON (the shell form).

    Docker falls back to the shell form whenever the text does not decode as a JSON array,
    so `CMD [ "a"` is a shell command; a decoded array holding anything but strings is an error.
    """
    text = args.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise DockerfileError("when using JSON array syntax, arrays must be comprised of strings only")
    return tuple(value)


def _reject_constant(name: str) -> object:
    # Go's JSON decoder has no NaN/Infinity: such text is not JSON, hence the shell form.
    raise ValueError(name)
