"""The lazy `paas` group: its table names every command of every module, and loads no more."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict

from paas.cli.commands import COMMAND_MODULES, load_module_commands


def test_the_table_names_exactly_the_commands_of_each_module() -> None:
    by_module: dict[str, set[str]] = defaultdict(set)
    for name, module in COMMAND_MODULES.items():
        by_module[module].add(name)
    for module, names in by_module.items():
        assert {c.name for c in load_module_commands(module)} == names, module


def test_an_engine_command_does_not_import_the_job_queue() -> None:
    code = (
        "import sys\n"
        "from paas.cli.main import main\n"
        "main(['engine', '--help'])\n"
        "print(sorted(m for m in ('rq', 'redis', 'paramiko', 'flask') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[]"), out.stdout
