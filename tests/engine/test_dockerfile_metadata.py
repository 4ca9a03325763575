"""Config-only instructions (pure): Docker's CMD/ENTRYPOINT table and each instruction's rules."""

from __future__ import annotations

import pytest

from paas.engine.dockerfile.metadata import apply_change, apply_changes, command_line, variables
from paas.engine.images import ImageConfig
from paas.errors import DockerfileError

SHELL = ("/bin/sh", "-c")
ENTRY_SHELL = "ENTRYPOINT exec_entry p1_entry"
ENTRY_EXEC = 'ENTRYPOINT ["exec_entry", "p1_entry"]'
CMD_EXEC = 'CMD ["exec_cmd", "p1_cmd"]'
CMD_SHELL = "CMD exec_cmd p1_cmd"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        # The table of Docker's reference, "Understand how CMD and ENTRYPOINT interact".
        ([], ()),  # no ENTRYPOINT, no CMD: nothing to run (Docker refuses to start it)
        ([ENTRY_SHELL], (*SHELL, "exec_entry p1_entry")),
        ([ENTRY_EXEC], ("exec_entry", "p1_entry")),
        ([CMD_EXEC], ("exec_cmd", "p1_cmd")),
        ([CMD_EXEC, ENTRY_EXEC], ("exec_entry", "p1_entry", "exec_cmd", "p1_cmd")),
        ([CMD_SHELL], (*SHELL, "exec_cmd p1_cmd")),
        ([CMD_SHELL, ENTRY_EXEC], ("exec_entry", "p1_entry", *SHELL, "exec_cmd p1_cmd")),
    ],
)
def test_cmd_entrypoint_table(lines: list[str], expected: tuple[str, ...]) -> None:
    assert command_line(apply_changes(ImageConfig(), lines)) == expected


@pytest.mark.parametrize("cmd", [CMD_EXEC, CMD_SHELL])
def test_shell_entrypoint_ignores_cmd(cmd: str) -> None:
    # "/bin/sh -c exec_entry p1_entry" whatever CMD is: CMD's words only become sh's $0, $1...
    argv = command_line(apply_changes(ImageConfig(), [cmd, ENTRY_SHELL]))
    assert argv[:3] == (*SHELL, "exec_entry p1_entry")


def test_entrypoint_clears_an_inherited_cmd_but_not_its_own() -> None:
    base = ImageConfig(cmd=("base-cmd",))
    assert apply_change(base, ENTRY_EXEC).cmd is None
    assert apply_changes(base, ["CMD mine", ENTRY_EXEC]).cmd == (*SHELL, "mine")
    assert apply_changes(base, [ENTRY_EXEC, "CMD after"]).cmd == (*SHELL, "after")


def test_shell_form_uses_the_current_shell() -> None:
    config = apply_changes(ImageConfig(), ['SHELL ["/bin/bash", "-eu", "-c"]', "CMD echo $HOME"])
    assert config.cmd == ("/bin/bash", "-eu", "-c", "echo $HOME")  # never substituted here
    assert config.shell == ("/bin/bash", "-eu", "-c")
    with pytest.raises(DockerfileError, match="JSON form"):
        apply_change(config, "SHELL /bin/bash -c")


def test_env_expands_against_the_env_before_the_instruction() -> None:
    lines = ["ENV A=new B=$A", 'ENV C="$A and $B"', "ENV D hello  world"]
    config = apply_changes(ImageConfig(env=("A=old",)), lines)
    assert config.env == ("A=new", "B=old", "C=new and old", "D=hello  world")


def test_labels_merge_and_maintainer() -> None:
    config = apply_changes(ImageConfig(labels={"keep": "1", "over": "1"}),
                           ['LABEL over=2 "with space"="a b"', "MAINTAINER Jane <jane@example.com>"])
    assert config.labels == {"keep": "1", "over": "2", "with space": "a b",
                             "maintainer": "Jane <jane@example.com>"}


def test_expose_ports_ranges_and_protocols() -> None:
    config = apply_changes(ImageConfig(exposed_ports=("22/tcp",)), ["EXPOSE 80 53/UDP 7000-7002/tcp 80/tcp"])
    assert config.exposed_ports == ("22/tcp", "53/udp", "7000/tcp", "7001/tcp", "7002/tcp", "80/tcp")
    for bad in ("EXPOSE 80/icmp", "EXPOSE http", "EXPOSE 70000", "EXPOSE 9-3"):
        with pytest.raises(DockerfileError, match="change line 1: EXPOSE: invalid port"):
            apply_change(config, bad)


def test_healthcheck() -> None:
    check = apply_change(ImageConfig(), 'HEALTHCHECK --interval=1m30s --timeout=500ms --start-interval=2s '
                                        '--retries=5 CMD ["curl", "-f", "http://localhost/"]').healthcheck
    assert check == {"Test": ["CMD", "curl", "-f", "http://localhost/"], "Interval": 90 * 10**9,
                     "Timeout": 500 * 10**6, "StartInterval": 2 * 10**9, "Retries": 5}
    assert apply_change(ImageConfig(), "HEALTHCHECK CMD true").healthcheck == {"Test": ["CMD-SHELL", "true"]}
    assert apply_change(ImageConfig(), "HEALTHCHECK NONE").healthcheck == {"Test": ["NONE"]}
    for bad in ("HEALTHCHECK --interval=5 CMD true", "HEALTHCHECK --timeout=10us CMD true",
                "HEALTHCHECK NONE extra", "HEALTHCHECK RUN true", "HEALTHCHECK --retries=x CMD true"):
        with pytest.raises(DockerfileError):
            apply_change(ImageConfig(), bad)


def test_user_workdir_volume_stopsignal() -> None:
    env = {"APP": "svc"}
    config = apply_changes(ImageConfig(), ["USER ${APP}:staff", "WORKDIR /srv", "WORKDIR $APP/data",
                                           "WORKDIR ../logs", 'VOLUME ["/v1", "/$APP"]', "VOLUME /v2 /v3",
                                           "STOPSIGNAL ${SIG:-SIGINT}"], env)
    assert config.user == "svc:staff"
    assert config.working_dir == "/srv/svc/logs"
    assert config.volumes == ("/svc", "/v1", "/v2", "/v3")
    assert config.stop_signal == "SIGINT"
    for ok in ("STOPSIGNAL 9", "STOPSIGNAL TERM", "STOPSIGNAL SIGRTMIN+3"):
        apply_change(config, ok)
    with pytest.raises(DockerfileError, match="invalid signal"):
        apply_change(config, "STOPSIGNAL SIGBOGUS")


def test_onbuild_is_stored_as_written() -> None:
    config = apply_changes(ImageConfig(), ["ONBUILD COPY $SRC /app", "ONBUILD RUN make"], {"SRC": "x"})
    assert config.on_build == ("COPY $SRC /app", "RUN make")
    with pytest.raises(DockerfileError, match="ONBUILD ONBUILD"):
        apply_change(config, "ONBUILD ONBUILD RUN x")


def test_changes_are_config_only() -> None:
    with pytest.raises(DockerfileError, match="RUN cannot be applied"):
        apply_change(ImageConfig(), "RUN rm -rf /")
    with pytest.raises(DockerfileError, match="unknown instruction"):
        apply_change(ImageConfig(), "BOGUS x")


def test_env_wins_over_args_in_substitution() -> None:
    config = ImageConfig(env=("A=from-env",))
    assert variables(config, {"A": "from-arg", "B": "arg"}) == {"A": "from-env", "B": "arg"}
    assert apply_change(config, "LABEL a=$A b=$B", {"A": "from-arg", "B": "arg"}).labels == {
        "a": "from-env", "b": "arg"}
