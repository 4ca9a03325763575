"""The lazy `paas` group: its table names every command of every module, and loads no more."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

from paas.cli.commands import COMMAND_MODULES, load_module_commands


def loaded_by(argv: list[str], wanted: tuple[str, ...]) -> list[str]:
    """Which of `wanted` a fresh interpreter has imported after running `paas <argv>`."""
    code = (
        "import json, sys\n"
        "from paas.cli.main import main\n"
        f"main({argv!r})\n"
        f"print(json.dumps(sorted(m for m in {wanted!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_table_names_exactly_the_commands_of_each_module() -> None:
    by_module: dict[str, set[str]] = defaultdict(set)
    for name, module in COMMAND_MODULES.items():
        by_module[module].add(name)
    for module, names in by_module.items():
        assert {c.name for c in load_module_commands(module)} == names, module


def test_an_engine_command_does_not_import_the_job_queue() -> None:
    assert loaded_by(["engine", "--help"], ("rq", "redis", "paramiko", "flask")) == []


def test_engine_run_loads_what_a_start_needs_and_not_the_rest() -> None:
    # Every `paas engine run` pays for what its imports load: netlink, iptables, `exec`, the
    # build and registry code and the platform's services stay out until a command needs them.
    heavy = ("pyroute2", "paas.engine.nat", "paas.engine.runtime.exec", "paas.engine.registry",
             "paas.engine.gc", "paas.engine.archive", "paas.engine.dockerfile", "paas.store",
             "rq", "redis", "flask")
    assert loaded_by(["engine", "run", "--help"], heavy) == []
