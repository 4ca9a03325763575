"""Survival, end to end: containers outlive a SIGKILL of every platform process, keep answering,
and the restarted platform lists and controls them; `scripts/down` then leaves nothing.

The platform is the real one (scripts/up --detach under a temp PAAS_HOME, random ports and
subnet), its engine monitor included: it is what restarts a crashed `--restart always`
container once the platform is back.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from platformkit import (
    ROOT,
    bridge_of,
    leftovers,
    platform_env,
    process_tree,
    scripts_down,
    scripts_up,
    seed_engine,
)
from testkit import accepts, free_port, http_get

from paas.engine.runtime import process

HTTPD = 'mkdir -p /w && echo "hello from $0" > /w/index.html && exec httpd -f -p 80 -h /w'
ANSWER_TIMEOUT_S = 30.0


@dataclass
class Platform:
    home: Path
    env: dict[str, str]

    def paas(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(ROOT / ".venv/bin/paas"), *args], env=self.env, text=True,
                              capture_output=True, timeout=120)

    def engine(self, *args: str) -> str:
        done = self.paas("engine", *args)
        assert done.returncode == 0, f"paas engine {' '.join(args)}: {done.stderr}"
        return done.stdout


@pytest.fixture
def platform(tmp_path: Path, base_images: Path) -> Iterator[Platform]:
    env = platform_env(tmp_path / "home")
    seed_engine(base_images, tmp_path / "home")
    try:
        up = scripts_up(env)
        assert up.returncode == 0, f"scripts/up failed:\n{up.stdout}\n{up.stderr}"
        yield Platform(tmp_path / "home", env)
    finally:
        scripts_down(env)


def kill_platform(home: Path) -> list[int]:
    """SIGKILL the supervisor and every process it started, by PID (checked by starttime).
    The containers are not among them: their launcher exited, so nothing of ours is their parent."""
    refs = []
    for pid in process_tree(int((home / "run" / "platform.pid").read_text())):
        starttime = process.read_starttime(pid)
        if starttime is not None:
            refs.append(process.ProcessRef(pid, starttime))
    for ref in refs:
        process.send_signal(ref, signal.SIGKILL)
    for ref in refs:
        assert process.wait_exit(ref, 10), f"process {ref.pid} survived SIGKILL"
    return [ref.pid for ref in refs]


def platform_alive(platform: Platform) -> bool:
    """Its supervisor runs, so none of its processes exited (it stops all when one does)."""
    pid = int((platform.home / "run" / "platform.pid").read_text())
    return process.read_starttime(pid) is not None and accepts(int(platform.env["PAAS_HTTP_PORT"]))


def exits(platform: Platform) -> str:
    """The supervisor's lines on processes that exited, with what each said just before."""
    lines = (platform.home / "logs" / "platform.log").read_text().splitlines()
    marks = [i for i, line in enumerate(lines) if "exited with status" in line]
    return "\n".join("\n".join(lines[max(0, i - 15): i + 1]) for i in marks)


def container_pid(platform: Platform, name: str) -> process.ProcessRef:
    [doc] = json.loads(platform.engine("inspect", name))
    pid = doc["State"]["Pid"]
    starttime = process.read_starttime(pid)
    assert pid and starttime is not None
    return process.ProcessRef(pid, starttime)


def test_containers_survive_the_platform_and_are_controlled_after(platform: Platform) -> None:
    ports = {name: free_port() for name in ("one", "two")}
    for name, port in ports.items():
        platform.engine("run", "-d", "--name", name, "-p", f"{port}:80", "--restart", "always",
                        "busybox", "sh", "-c", HTTPD, name)
    for name, port in ports.items():
        assert http_get("127.0.0.1", port, ANSWER_TIMEOUT_S) == f"hello from {name}\n"

    killed = kill_platform(platform.home)
    assert len(killed) >= 8, killed  # the supervisor, the Procfile's 6 and nginx's workers
    for name, port in ports.items():
        assert http_get("127.0.0.1", port, ANSWER_TIMEOUT_S) == f"hello from {name}\n"

    up = scripts_up(platform.env)
    assert up.returncode == 0, f"scripts/up failed:\n{up.stdout}\n{up.stderr}"
    listed = platform.engine("ps")
    assert all(name in listed for name in ports), listed

    # The platform's monitor watches them again: a crash of `always` comes back...
    crashed = container_pid(platform, "two")
    assert process.send_signal(crashed, signal.SIGKILL)
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while "(restarts: 1)" not in platform.engine("ps") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert http_get("127.0.0.1", ports["two"], ANSWER_TIMEOUT_S) == "hello from two\n"
    # ...and a user's stop and rm -f control them.
    assert platform.engine("stop", "-t", "1", "one") == "one\n"
    assert platform.engine("rm", "-f", "two") == "two\n"
    listed = platform.engine("ps", "-a")
    assert "two" not in listed and "Exited" in listed.splitlines()[1], listed
    assert platform_alive(platform), "the restarted platform stopped:\n" + exits(platform)

    down = scripts_down(platform.env)
    assert down.returncode == 0, down.stderr
    bridge = bridge_of(platform.env)
    deadline = time.monotonic() + 15
    while (left := leftovers(platform.home, bridge)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == []
