import pytest

from paas.core.procfile import parse_procfile
from paas.errors import ProcfileInvalidError


def test_parses_types_in_order() -> None:
    text = "# comment\nweb: python3 app.py --port $PORT\n\nworker:python3 worker.py\n"
    assert parse_procfile(text) == {"web": "python3 app.py --port $PORT", "worker": "python3 worker.py"}


def test_colons_in_command_are_kept() -> None:
    assert parse_procfile("web: echo a:b")["web"] == "echo a:b"


@pytest.mark.parametrize(
    "text", ["web python3 app.py", "web:", "Web: x", "web: a\nweb: b", "we b: x", "x" * 70000]
)
def test_bad_procfiles(text: str) -> None:
    with pytest.raises(ProcfileInvalidError):
        parse_procfile(text)
