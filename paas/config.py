"""Settings: the platform's configuration, read once from PAAS_* variables at each entry point."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from paas.core.units import parse_memory
from paas.errors import UsageError
from paas.home import DEFAULT_HOME, ENGINE_DIR, home_dir

DEFAULT_SSH_PORT = 2222
DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443
DEFAULT_DASHBOARD_PORT = 5000
DEFAULT_DOMAIN = "localhost"
DEFAULT_SUBNET = "10.200.0.0/16"
DEFAULT_APP_PORT = 5000
DEFAULT_STOP_TIMEOUT = 10.0
DEFAULT_CHECK_WAIT = 2.0
DEFAULT_CHECK_TIMEOUT = 60.0
# Seconds old containers keep serving after the switch, for requests in flight (Dokku: 60).
DEFAULT_WAIT_TO_RETIRE = 5.0
DEFAULT_KEEP_RELEASES = 5
DEFAULT_WORKERS = 2
DEFAULT_BUILD_MEMORY = 4 << 30


class SettingsError(ValueError):
    """A PAAS_* variable has a value the platform cannot use."""


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a whole number, got {raw!r}") from None
    if not 0 < value < 65536:
        raise SettingsError(f"{key} must be a port number (1-65535), got {value}")
    return value


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a number, got {raw!r}") from None


def _count(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise SettingsError(f"{key} must be a whole number of at least 1, got {raw!r}")
    return int(raw)


def _flag(env: Mapping[str, str], key: str) -> bool:
    raw = (env.get(key) or "0").strip().lower()
    if raw not in ("0", "1", "true", "false", "yes", "no"):
        raise SettingsError(f"{key} must be 1 or 0, got {raw!r}")
    return raw in ("1", "true", "yes")


def _memory(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return parse_memory(raw)
    except UsageError as exc:
        raise SettingsError(f"{key}: {exc}") from None


_REGISTRY_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def _registry(raw: str) -> str:
    if raw and not _REGISTRY_RE.fullmatch(raw):
        raise SettingsError(f"PAAS_REGISTRY must be host[:port] like registry.local:5000, got {raw!r}")
    return raw


_DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def _domain(raw: str) -> str:
    domain = raw.strip().lower()
    if not _DOMAIN_RE.fullmatch(domain):
        raise SettingsError(f"PAAS_DOMAIN must be a DNS name like apps.example.com, got {raw!r}")
    return domain


def _subnet(raw: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(raw, strict=True)
    except ValueError as exc:
        raise SettingsError(f"PAAS_SUBNET must be an IPv4 network like 10.200.0.0/16: {exc}") from None
    if net.prefixlen > 28:
        raise SettingsError("PAAS_SUBNET must be /28 or larger")
    return net


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path = Path(DEFAULT_HOME)
    ssh_port: int = DEFAULT_SSH_PORT
    http_port: int = DEFAULT_HTTP_PORT
    https_port: int = DEFAULT_HTTPS_PORT  # listened on only while some app has a certificate
    dashboard_port: int = DEFAULT_DASHBOARD_PORT
    domain: str = DEFAULT_DOMAIN
    redis_url: str | None = None
    subnet: str = DEFAULT_SUBNET
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    check_wait: float = DEFAULT_CHECK_WAIT
    check_timeout: float = DEFAULT_CHECK_TIMEOUT
    wait_to_retire: float = DEFAULT_WAIT_TO_RETIRE
    keep_releases: int = DEFAULT_KEEP_RELEASES
    # Where `FROM name` and `paas engine pull name` look for images the store lacks:
    # "host[:port]", "" for none. Plain HTTP only when registry_insecure (loopback registries).
    registry: str = ""
    registry_insecure: bool = False
    # Deploy workers: pushes of different apps build in parallel, up to this many at once.
    workers: int = DEFAULT_WORKERS
    # Limits of each builder container (buildpack steps); cpus None means all of them.
    build_memory: int = DEFAULT_BUILD_MEMORY
    build_cpus: float | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        subnet = _subnet(env.get("PAAS_SUBNET") or DEFAULT_SUBNET)
        return cls(
            home=Path(home_dir(env)),
            ssh_port=_int(env, "PAAS_SSH_PORT", DEFAULT_SSH_PORT),
            http_port=_int(env, "PAAS_HTTP_PORT", DEFAULT_HTTP_PORT),
            https_port=_int(env, "PAAS_HTTPS_PORT", DEFAULT_HTTPS_PORT),
            dashboard_port=_int(env, "PAAS_DASHBOARD_PORT", DEFAULT_DASHBOARD_PORT),
            domain=_domain(env.get("PAAS_DOMAIN") or DEFAULT_DOMAIN),
            redis_url=env.get("PAAS_REDIS_URL") or None,
            subnet=str(subnet),
            stop_timeout=_float(env, "PAAS_STOP_TIMEOUT", DEFAULT_STOP_TIMEOUT),
            check_wait=_float(env, "PAAS_CHECK_WAIT", DEFAULT_CHECK_WAIT),
            check_timeout=_float(env, "PAAS_CHECK_TIMEOUT", DEFAULT_CHECK_TIMEOUT),
            wait_to_retire=_float(env, "PAAS_WAIT_TO_RETIRE", DEFAULT_WAIT_TO_RETIRE),
            keep_releases=_count(env, "PAAS_KEEP_RELEASES", DEFAULT_KEEP_RELEASES),
            registry=_registry(env.get("PAAS_REGISTRY") or ""),
            registry_insecure=_flag(env, "PAAS_REGISTRY_INSECURE"),
            workers=_count(env, "PAAS_WORKERS", DEFAULT_WORKERS),
            build_memory=_memory(env, "PAAS_BUILD_MEMORY", DEFAULT_BUILD_MEMORY),
            build_cpus=_float(env, "PAAS_BUILD_CPUS", 0.0) or None,
        )

    def to_env(self) -> dict[str, str]:
        """The PAAS_* variables that reproduce these settings in a child process."""
        env = {
            "PAAS_HOME": str(self.home),
            "PAAS_SSH_PORT": str(self.ssh_port),
            "PAAS_HTTP_PORT": str(self.http_port),
            "PAAS_HTTPS_PORT": str(self.https_port),
            "PAAS_DASHBOARD_PORT": str(self.dashboard_port),
            "PAAS_DOMAIN": self.domain,
            "PAAS_SUBNET": self.subnet,
            "PAAS_STOP_TIMEOUT": str(self.stop_timeout),
            "PAAS_CHECK_WAIT": str(self.check_wait),
            "PAAS_CHECK_TIMEOUT": str(self.check_timeout),
            "PAAS_WAIT_TO_RETIRE": str(self.wait_to_retire),
            "PAAS_KEEP_RELEASES": str(self.keep_releases),
            "PAAS_REGISTRY": self.registry,
            "PAAS_REGISTRY_INSECURE": "1" if self.registry_insecure else "0",
            "PAAS_WORKERS": str(self.workers),
            "PAAS_BUILD_MEMORY": str(self.build_memory),
            "PAAS_BUILD_CPUS": str(self.build_cpus or ""),
        }
        if self.redis_url:
            env["PAAS_REDIS_URL"] = self.redis_url
        return env

    # Derived paths and names: one place, so every process agrees on them.
    @property
    def db_path(self) -> Path:
        return self.home / "paas.db"

    @property
    def engine_root(self) -> Path:
        return self.home / ENGINE_DIR

    @property
    def repos_dir(self) -> Path:
        return self.home / "repos"

    @property
    def builds_dir(self) -> Path:
        return self.home / "builds"

    @property
    def cache_dir(self) -> Path:
        """Per-app build caches (CACHE_DIR of the buildpacks), kept between builds."""
        return self.home / "cache"

    @property
    def nginx_dir(self) -> Path:
        return self.home / "nginx"

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def host_key_path(self) -> Path:
        return self.home / "ssh" / "host_ed25519_key"

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or f"unix://{self.redis_dir / 'redis.sock'}"

    @property
    def bridge_name(self) -> str:
        """A bridge name unique to the subnet, so instances on different subnets coexist."""
        digest = hashlib.sha256(self.subnet.encode()).hexdigest()[:8]
        return f"paas{digest}"
