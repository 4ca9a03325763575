"""Helpers of the end-to-end tests that bring up the whole platform: its environment on random
ports and a random subnet under a temp PAAS_HOME, scripts/up and scripts/down, its processes,
and what a platform may leave behind on the host."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from testkit import free_port, random_subnet

from paas.config import Settings
from paas.engine.runtime.cgroups import group_name

ROOT = Path(__file__).resolve().parents[1]
UP_TIMEOUT_S = 400


def platform_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a platform of its own: random loopback ports, a random subnet."""
    return {
        **os.environ,
        "PAAS_HOME": str(home),
        "PAAS_SSH_PORT": str(free_port()),
        "PAAS_HTTP_PORT": str(free_port()),
        "PAAS_DASHBOARD_PORT": str(free_port()),
        "PAAS_SUBNET": random_subnet(),
        "PAAS_STOP_TIMEOUT": "3",
        "PAAS_WAIT_TO_RETIRE": "0",
        **extra,
    }


def seed_engine(base_images: Path, home: Path) -> None:
    """Copy an engine root holding the base images into `home`, so scripts/up does not build
    them again: `cp -a`, as snapshots hold device nodes (overlay whiteouts) that
    shutil.copytree cannot copy."""
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(base_images), str(home / "engine")], check=True)


def bridge_of(env: dict[str, str]) -> str:
    return Settings.from_env(env).bridge_name


def scripts_up(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    up = subprocess.run([str(ROOT / "scripts/up"), "--detach"], env=env, text=True,
                        capture_output=True, timeout=UP_TIMEOUT_S)
    print(f"scripts/up --detach took {time.monotonic() - started:.1f}s")
    return up


def scripts_down(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    down = subprocess.run([str(ROOT / "scripts/down")], env=env, text=True, capture_output=True,
                          timeout=120)
    print(down.stdout, down.stderr)
    log = Path(env["PAAS_HOME"]) / "logs" / "platform.log"
    if log.exists():
        print("platform log tail:\n" + "\n".join(log.read_text().splitlines()[-60:]))
    return down


def _of_platform(proc: Path, home: Path) -> bool:
    """Started with this PAAS_HOME, or (nginx clears its environment) naming it in its argv."""
    environ = (proc / "environ").read_bytes() + b"\0"
    return f"PAAS_HOME={home}\0".encode() in environ or str(home).encode() in (
        proc / "cmdline").read_bytes()


def process_tree(root_pid: int) -> list[int]:
    """`root_pid` and all its descendants, parents first."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_bytes() if proc.name.isdigit() else b""
        except OSError:
            continue
        if stat:
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(proc.name))
    tree = [root_pid]
    for pid in tree:  # grows as it goes: breadth first
        tree.extend(children.get(pid, []))
    return tree


def leftovers(home: Path, bridge: str) -> list[str]:
    """Mounts, links, iptables rules, cgroups and processes of this platform still on the host."""
    found = []
    mounts = Path("/proc/mounts").read_text()
    found += [line for line in mounts.splitlines() if str(home) in line]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [line for line in links.splitlines() if bridge in line]
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    found += [line for line in rules.splitlines() if f"paas:{bridge}" in line]
    group = group_name(home / "engine")
    found += [str(p) for p in Path("/sys/fs/cgroup").glob(f"**/{group}") if p.is_dir()]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if _of_platform(proc, home):
                    found.append(f"process {proc.name}: {(proc / 'cmdline').read_bytes()[:80]!r}")
            except OSError:
                continue
    return found
