import pytest

from paas.engine.dockerfile.parser import parse
from paas.engine.dockerfile.substitute import substitute
from paas.errors import DockerfileError


def test_parses_forms_comments_and_continuations() -> None:
    text = (
        "# syntax comment\n"
        "FROM busybox\n"
        "RUN echo a \\\n"
        "  # a comment inside a continuation\n"
        "  && echo b\n"
        'CMD ["python3", "app.py"]\n'
        "env A=1\n"
    )
    steps = parse(text)
    assert [s.keyword for s in steps] == ["FROM", "RUN", "CMD", "ENV"]
    assert steps[1].args == "echo a && echo b" and steps[1].exec_form is None
    assert steps[2].exec_form == ("python3", "app.py")
    assert steps[3].line == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no instructions"),
        ("RUN true", "first instruction must be FROM"),
        ("FROM busybox\nFROBNICATE x", "line 2: unknown instruction 'FROBNICATE'"),
        ('FROM busybox\nCMD ["a", ', "line 2: CMD has malformed JSON"),
        ("FROM busybox\nCMD [1, 2]", "list of strings"),
        ("FROM busybox\nRUN", "RUN needs arguments"),
        ("FROM busybox\nHEALTHCHECK NONE", "not supported by this engine yet"),
    ],
)
def test_errors_name_the_line_and_instruction(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$A/x", "1/x"),
        ("${A}y", "1y"),
        ("${B:-dflt}", "dflt"),
        ("${A:-dflt}", "1"),
        ("${A:+set}", "set"),
        ("${B:+set}", ""),
        (r"\$A", "$A"),
        ("$MISSING.", "."),
    ],
)
def test_substitution(text: str, expected: str) -> None:
    assert substitute(text, {"A": "1"}) == expected
