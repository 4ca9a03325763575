import pytest

from paas.config import Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.ssh_port, s.http_port, s.dashboard_port) == (2222, 80, 5000)
    assert str(s.home) == "/var/lib/paas" and s.domain == "localhost"
    assert s.effective_redis_url == "unix:///var/lib/paas/redis/redis.sock"


def test_round_trip_through_env() -> None:
    s = Settings.from_env({"PAAS_HOME": "/tmp/x", "PAAS_SSH_PORT": "2022", "PAAS_DOMAIN": "Apps.Test"})
    assert Settings.from_env(s.to_env()) == s
    assert s.domain == "apps.test"


def test_bridge_name_depends_on_subnet() -> None:
    a = Settings.from_env({"PAAS_SUBNET": "10.200.0.0/16"})
    b = Settings.from_env({"PAAS_SUBNET": "10.201.0.0/16"})
    assert a.bridge_name != b.bridge_name
    assert len(a.bridge_name) <= 15


@pytest.mark.parametrize(
    "env",
    [
        {"PAAS_SSH_PORT": "abc"},
        {"PAAS_HTTP_PORT": "70000"},
        {"PAAS_SUBNET": "10.200.0.1/16"},
        {"PAAS_SUBNET": "nope"},
        {"PAAS_DOMAIN": "a b;"},
        {"PAAS_DOMAIN": "x}; include /etc/passwd"},
    ],
)
def test_bad_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)
