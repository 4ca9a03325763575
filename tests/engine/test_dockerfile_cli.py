"""`paas engine build` through the real entry point: flags, output, tags, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from dockerfile_kit import assert_clean, make_context, read

from paas.cli.main import main
from paas.engine.engine import Engine


@pytest.fixture
def engine(cli_engine: Engine) -> Engine:
    return cli_engine


def test_build_command(engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dockerfile = "FROM busybox AS base\nARG WHO=nobody\nRUN echo hi $WHO > /who\nFROM base\nLABEL b=1\n"
    context = make_context(tmp_path, "", {"custom.Dockerfile": dockerfile})
    argv = ["engine", "build", "-t", "cli:one", "-t", "cli:two", "-f", str(context / "custom.Dockerfile"),
            "--build-arg", "WHO=you", "--target", "base", str(context)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Step 3/3 : RUN echo hi $WHO > /who" in out
    assert "Successfully tagged cli:one" in out and "Successfully tagged cli:two" in out
    image = engine.images.get("cli:two")
    assert engine.images.get("cli:one").id == image.id
    assert read(engine, image, "/who") == "hi you\n"

    assert main([*argv[:-1], "-q", "--no-cache", str(context)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("sha256:") and "\n" not in out

    assert main(["engine", "build", "--build-arg", "NOEQUALS", str(context)]) != 0
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["engine", "build", str(context)]) != 0  # its ./Dockerfile is empty
    assert "has no instructions" in capsys.readouterr().err
    assert_clean(engine)
