"""`paas engine run|ps|stop|kill|rm|logs|stats|inspect` through the real entry point and engine."""

from __future__ import annotations

import json
from typing import Any

import pytest
from testkit import engine_cli as paas
from testkit import free_port, wait_until

from paas.cli.container_flags import merged_env
from paas.core.units import parse_memory
from paas.engine.containers import ContainerStatus
from paas.engine.engine import Engine
from paas.errors import UsageError

SLEEPER = ("sh", "-c", "echo started; trap 'echo got-usr1' USR1; while true; do sleep 0.1; done")


def inspect(capsys: pytest.CaptureFixture[str], name: str) -> dict[str, Any]:
    code, out, err = paas(capsys, "inspect", name)
    assert code == 0, err
    [doc] = json.loads(out)
    return doc


def logs_contain(engine: Engine, name: str, text: str) -> bool:
    [container] = [c for c in engine.runtime.list() if c.name == name]
    path = engine.runtime.logs_path(container.id)
    return path.exists() and text in path.read_text()


def test_run_in_the_foreground_exits_with_the_containers_code(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert paas(capsys, "run", "--network", "none", "--name", "hi", "busybox", "echo", "-n", "hi") == (
        0, "hi\n", "")
    assert paas(capsys, "run", "--network", "none", "busybox", "sh", "-c", "exit 3")[0] == 3
    code, _, err = paas(capsys, "run", "--network", "none", "busybox", "no-such-command")
    assert code == 127 and "no-such-command" in err
    code, out, _ = paas(capsys, "ps", "-a")
    assert "Exited (0)" in out and "Exited (3)" in out and "Exited (127)" in out
    code, _, err = paas(capsys, "run", "--name", "hi", "busybox", "true")
    assert code == 1 and "already in use" in err


def test_detached_lifecycle_ps_logs_stop_rm(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = paas(capsys, "run", "-d", "--network", "none", "--name", "web", "busybox", *SLEEPER)
    container_id = out.strip()
    assert code == 0 and len(container_id) == 32
    assert engine.runtime.get(container_id).status is ContainerStatus.RUNNING
    code, out, _ = paas(capsys, "ps")
    header, row = out.splitlines()
    assert header.split()[:2] == ["CONTAINER", "ID"] and header.endswith("NAMES")
    assert row.startswith(container_id[:12]) and "busybox:latest" in row and " Up " in row
    assert row.endswith("web")
    assert paas(capsys, "ps", "-q") == (0, f"{container_id[:12]}\n", "")
    wait_until(lambda: logs_contain(engine, "web", "started"), what="the container's output")
    assert paas(capsys, "logs", "web") == (0, "started\n", "")
    assert paas(capsys, "logs", "-n", "0", container_id[:8]) == (0, "", "")

    assert paas(capsys, "stop", "-t", "5", "web") == (0, "web\n", "")
    assert paas(capsys, "ps")[1].splitlines()[1:] == []
    code, out, _ = paas(capsys, "ps", "-a")
    assert "Exited (143)" in out  # sh died of the SIGTERM the init forwarded
    doc = inspect(capsys, "web")
    assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 143
    assert doc["State"]["FinishedAt"] != "0001-01-01T00:00:00Z"
    assert paas(capsys, "rm", "web") == (0, "web\n", "")
    assert engine.runtime.list() == []


def test_logs_follow_until_exit(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    script = "for i in 1 2 3; do echo line$i; sleep 0.2; done"
    code, _, _ = paas(capsys, "run", "-d", "--network", "none", "--name", "counter", "busybox",
                      "sh", "-c", script)
    assert code == 0
    assert paas(capsys, "logs", "-f", "counter") == (0, "line1\nline2\nline3\n", "")
    assert paas(capsys, "logs", "--tail", "1", "counter")[1] == "line3\n"
    assert "Exited (0)" in paas(capsys, "ps", "-a")[1]


def test_rm_flag_removes_the_container(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    assert paas(capsys, "run", "--rm", "--network", "none", "busybox", "true")[0] == 0
    assert paas(capsys, "run", "--rm", "--network", "none", "busybox", "sh", "-c", "exit 4")[0] == 4
    assert paas(capsys, "run", "--rm", "--network", "none", "busybox", "no-such-command")[0] == 127
    assert engine.runtime.list() == []


def test_env_workdir_user(engine: Engine, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_CALLER", "passed")
    code, out, _ = paas(
        capsys, "run", "--rm", "--network", "none", "-e", "FOO=bar", "-e", "FROM_CALLER",
        "-e", "NOT_SET_ANYWHERE", "-w", "/tmp", "-u", "nobody", "busybox",
        "sh", "-c", 'echo "$FOO $FROM_CALLER ${NOT_SET_ANYWHERE-unset} $(pwd) $(id -u) $PATH"',
    )
    assert code == 0
    assert out == "bar passed unset /tmp 65534 /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    code, _, err = paas(capsys, "run", "-w", "relative", "busybox", "true")
    assert code == 2 and "absolute path" in err


def test_limits_and_labels_in_inspect(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = paas(capsys, "run", "-d", "--network", "none", "--name", "limited", "-m", "64m",
                        "--cpus", "0.5", "--pids-limit", "20", "--label", "tier=web", "busybox", *SLEEPER)
    assert code == 0, err
    doc = inspect(capsys, "limited")
    assert doc["Name"] == "/limited" and doc["Path"] == "sh"
    assert doc["State"]["Running"] is True and doc["State"]["Pid"] > 0
    assert doc["State"]["OOMKilled"] is False
    assert doc["HostConfig"] == {"Memory": 64 << 20, "NanoCpus": 500_000_000, "PidsLimit": 20,
                                 "NetworkMode": "none", "PortBindings": {}}
    assert doc["Config"]["Labels"] == {"tier": "web"} and doc["Config"]["Image"] == "busybox:latest"
    assert doc["Image"] == engine.images.get("busybox").id
    code, out, _ = paas(capsys, "stats", "--no-stream", "limited")
    header, row = out.splitlines()
    assert "MEM USAGE / LIMIT" in header and "PIDS" in header
    assert "/ 64MiB" in row and row.split()[-1].isdigit() and int(row.split()[-1]) >= 2
    # `inspect` still shows images, and says which kind it looked for
    assert inspect(capsys, "busybox")["RepoTags"] == ["busybox:latest"]
    code, _, err = paas(capsys, "inspect", "--type", "container", "busybox")
    assert code == 1 and "no such container" in err


def test_oom_kill_shows_in_inspect(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = paas(capsys, "run", "--network", "none", "--name", "hog", "-m", "16m", "busybox",
                      "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
    assert code == 137
    state = inspect(capsys, "hog")["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137
    assert state["Error"] == f"OOM killed (memory limit {16 << 20} bytes)"


def test_publish_flag_shows_in_ps_and_inspect(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code, _, err = paas(capsys, "run", "-d", "--name", "webp", "-p", f"127.0.0.1:{port}:80",
                        "busybox", "httpd", "-f", "-p", "80")
    assert code == 0, err
    assert f"127.0.0.1:{port}->80/tcp" in paas(capsys, "ps")[1]
    doc = inspect(capsys, "webp")
    binding = {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert doc["HostConfig"]["PortBindings"] == doc["NetworkSettings"]["Ports"] == binding
    assert doc["NetworkSettings"]["IPAddress"] and doc["HostConfig"]["NetworkMode"] == "bridge"
    code, _, err = paas(capsys, "run", "--network", "none", "-p", "8080:80", "busybox", "true")
    assert code == 1 and "bridge" in err


def test_kill_sends_the_signal(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    assert paas(capsys, "run", "-d", "--network", "none", "--name", "trapper", "busybox", *SLEEPER)[0] == 0
    wait_until(lambda: logs_contain(engine, "trapper", "started"), what="the trap to be set")
    assert paas(capsys, "kill", "-s", "USR1", "trapper") == (0, "trapper\n", "")
    wait_until(lambda: logs_contain(engine, "trapper", "got-usr1"), what="the USR1 trap")
    assert engine.runtime.list()[0].status is ContainerStatus.RUNNING
    assert paas(capsys, "kill", "trapper") == (0, "trapper\n", "")
    assert inspect(capsys, "trapper")["State"]["ExitCode"] == 137
    code, _, err = paas(capsys, "kill", "trapper")
    assert code == 1 and "not running" in err
    code, _, err = paas(capsys, "kill", "-s", "NOSUCH", "trapper")
    assert code == 2 and "invalid signal" in err


def test_rm_refuses_a_running_container_without_force(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert paas(capsys, "run", "-d", "--network", "none", "--name", "busy", "busybox", *SLEEPER)[0] == 0
    code, out, err = paas(capsys, "rm", "busy")
    assert code == 1 and out == "" and "container is running" in err
    assert engine.runtime.list()[0].status is ContainerStatus.RUNNING
    assert paas(capsys, "rm", "-f", "busy") == (0, "busy\n", "")
    assert engine.runtime.list() == []


def test_unknown_containers_are_errors(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    for verb in ("stop", "kill", "rm", "logs", "stats"):
        code, _, err = paas(capsys, verb, "nosuch")
        assert code == 1 and "no such container: nosuch" in err, verb
    code, _, err = paas(capsys, "inspect", "nosuch")
    assert code == 1 and "nosuch" in err
    code, _, err = paas(capsys, "run", "no-such-image")
    assert code == 1 and "no-such-image" in err


def test_flag_parsing() -> None:
    assert parse_memory("256m") == 256 << 20
    assert parse_memory("1g") == parse_memory("1GB") == parse_memory("1gib") == 1 << 30
    assert parse_memory("7000k") == 7000 << 10 and parse_memory("10000000") == 10_000_000
    for bad in ("12x", "m", "-5m", "5m"):  # 5m is under Docker's 6MB floor
        with pytest.raises(UsageError):
            parse_memory(bad)
    assert merged_env(("PATH=/bin", "A=1"), ("A=2", "B=x=y")) == ("PATH=/bin", "A=2", "B=x=y")


def test_stop_sends_the_images_stopsignal(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    base = engine.images.get("busybox")
    image = engine.images.commit(base, None, base.config.replace(stop_signal="SIGUSR1"), "STOPSIGNAL")
    engine.images.tag(image, "usr1stop:1")
    script = "trap '' TERM; trap 'echo got-usr1; exit 0' USR1; echo up; while :; do sleep 0.1; done"
    code, _, err = paas(capsys, "run", "-d", "--network", "none", "--name", "usr1", "usr1stop:1",
                        "sh", "-c", script)
    assert code == 0, err
    wait_until(lambda: "up" in paas(capsys, "logs", "usr1")[1], timeout=10, what="the app to start")
    assert paas(capsys, "stop", "-t", "20", "usr1")[0] == 0
    state = inspect(capsys, "usr1")["State"]
    assert (state["ExitCode"], state["Running"]) == (0, False)  # USR1, not TERM and not KILL
    assert "got-usr1" in paas(capsys, "logs", "usr1")[1]


def test_restart_flag_is_validated(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    for bad, why in (("sometimes", "invalid restart policy"), ("always:3", "only on-failure"),
                     ("on-failure:x", "a number")):
        code, _, err = paas(capsys, "run", "-d", "--restart", bad, "busybox", "true")
        assert code != 0 and why in err, (bad, err)
    code, _, err = paas(capsys, "run", "-d", "--rm", "--restart", "always", "busybox", "true")
    assert code != 0 and "--restart and --rm" in err
    code, _, err = paas(capsys, "run", "--restart", "always", "busybox", "true")
    assert code != 0 and "needs -d" in err
    assert engine.runtime.list() == []


def test_detached_rm_and_restart_need_the_monitor(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    from paas.engine.runtime import monitorlock

    code, out, err = paas(capsys, "run", "-d", "--rm", "--network", "none", "busybox",
                          "sh", "-c", "sleep 0.5")
    assert code == 0, err
    gone = out.strip()
    code, out, err = paas(capsys, "run", "-d", "--restart", "on-failure:1", "--network", "none",
                          "--name", "flaky", "busybox", "sh", "-c", "sleep 0.3; exit 5")
    assert code == 0, err
    flaky = out.strip()
    wait_until(lambda: gone not in engine.runtime.store.ids(), timeout=30, what="the --rm removal")
    wait_until(lambda: (c := engine.runtime.get(flaky)).state.restart_count == 1
               and c.status is ContainerStatus.EXITED and c.state.finished_at is not None,
               timeout=30, what="one restart")
    doc = inspect(capsys, "flaky")
    assert (doc["RestartCount"], doc["State"]["ExitCode"]) == (1, 5)
    assert monitorlock.holder(engine.runtime.root) is not None  # stopped by the fixture's cleanup
