"""config, config:get, config:set and config:unset in-process over a real Store: values round-trip
exactly; bad input changes nothing. (An app with no release: nothing to restart.)"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
from pathlib import Path

import pytest
from clikit import Paas

from paas.store import Store


@pytest.fixture
def paas(paas_home: Path, store: Store, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Paas:
    return Paas(paas_home, store, monkeypatch, capsys)

ODD_VALUES = {
    "SPACES": "  two  spaces  ",
    "QUOTES": "it's \"quoted\" `ticks`",
    "EQUALS": "a=b==c=",
    "NEWLINES": "line one\nline two\n\nend",
    "UNICODE": "héllo wörld ✓ 日本",
    "SHELL": "$(touch /tmp/x); echo $HOME | cat",
    "EMPTY": "",
    "BACKSLASH": "C:\\path\\n",
}


@pytest.fixture
def shop(paas: Paas) -> Paas:
    assert paas("apps:create", "shop").code == 0
    return paas


def test_odd_values_round_trip_exactly(shop: Paas) -> None:
    pairs = [f"{key}={value}" for key, value in ODD_VALUES.items()]
    result = shop("config:set", "--no-restart", "shop", *pairs)
    assert result.code == 0, result.err
    assert result.out.startswith("-----> Setting config vars\n")
    assert shop.store.get_config("shop") == ODD_VALUES
    for key, value in ODD_VALUES.items():
        got = shop("config:get", "shop", key)
        assert got.code == 0 and got.out == value + "\n", key
    assert json.loads(shop("config", "shop", "--format", "json").out) == ODD_VALUES


def test_the_shell_format_sources_back_to_the_same_values(shop: Paas) -> None:
    shop("config:set", "--no-restart", "shop", *(f"{k}={v}" for k, v in ODD_VALUES.items()))
    lines = shop("config", "shop", "--format", "export").out
    script = lines + "".join(f"printf '%s\\0' \"${key}\"\n" for key in ODD_VALUES)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split("\0")[:-1] == list(ODD_VALUES.values())
    assert shop("config", "shop", "--format", "shell").out == lines.replace("export ", "")
    assert shlex.split(lines.splitlines()[0])[0] == "export"


def test_config_show_aligns_like_dokku(shop: Paas) -> None:
    shop("config:set", "--no-restart", "shop", "A=1", "LONGER_KEY=two words")
    expected = "=====> shop env vars\nA:           1\nLONGER_KEY:  two words\n"
    assert shop("config", "shop").out == expected
    assert shop("config:show", "shop").out == expected


def test_encoded_values(shop: Paas) -> None:
    secret = "multi\nline = ✓"
    encoded = base64.b64encode(secret.encode()).decode()
    assert shop("config:set", "--no-restart", "--encoded", "shop", f"SECRET={encoded}").code == 0
    assert shop("config:get", "shop", "SECRET").out == secret + "\n"
    bad = shop("config:set", "--no-restart", "--encoded", "shop", "OTHER=not base64!")
    assert bad.code == 2 and "base64" in bad.err
    assert "OTHER" not in shop.store.get_config("shop")


def test_unset(shop: Paas) -> None:
    shop("config:set", "--no-restart", "shop", "A=1", "B=2", "C=3")
    result = shop("config:unset", "--no-restart", "shop", "A", "C")
    assert result.code == 0 and result.out.startswith("-----> Unsetting config vars\n       A\n")
    assert shop.store.get_config("shop") == {"B": "2"}
    missing = shop("config:get", "shop", "A")
    assert (missing.code, missing.out) == (1, "")


def test_bad_input_changes_nothing(shop: Paas) -> None:
    shop("config:set", "--no-restart", "shop", "KEEP=1")
    for pairs in (["1BAD=x"], ["GOOD=1", "BAD-KEY=2"], ["NO_EQUALS_SIGN"], ["=value"], ["A B=1"]):
        result = shop("config:set", "--no-restart", "shop", *pairs)
        assert result.code in (1, 2), pairs
        assert "invalid config key" in result.err or "KEY=VALUE" in result.err, pairs
    assert shop("config:unset", "--no-restart", "shop", "KEEP", "bad-key").code == 1
    assert shop("config:get", "shop", "bad-key").code == 1
    assert shop("config:set", "--no-restart", "shop").code == 2
    assert shop.store.get_config("shop") == {"KEEP": "1"}


def test_a_nul_character_is_refused(shop: Paas) -> None:
    result = shop("config:set", "--no-restart", "shop", "A=x\0y")
    assert result.code == 1 and "NUL" in result.err
    assert shop.store.get_config("shop") == {}
