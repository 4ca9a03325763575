"""What a new release snapshots from the store: formation, limits, checks and hostnames, and
how a release is derived from another one (config change, scale, rollback, limits)."""

from __future__ import annotations

from dataclasses import dataclass

from paas.config import Settings
from paas.core.models import DEFAULT_PROCESS_TYPE, ROUTED_TYPE, Limits, Release, ReleaseKind
from paas.errors import DeployError
from paas.store import Store

CHECKS = "checks"
RESOURCE = "resource"
ALL_TYPES = "_all_"  # Dokku's name for "every process type" in checks:disable


def formation_for(processes: dict[str, str], stored: dict[str, int]) -> dict[str, int]:
    """Counts of the release's types: the stored ones, else web=1 and the others 0 (Heroku
    and Dokku). Types the Procfile no longer declares leave the formation."""
    return {t: stored.get(t, 1 if t == ROUTED_TYPE else 0) for t in sorted(processes)}


def limits_of_app(store: Store, app: str) -> dict[str, Limits]:
    """The ("resource", "<type>.memory"|"<type>.cpus") properties as Limits per type."""
    memory: dict[str, int] = {}
    cpus: dict[str, float] = {}
    for key, value in store.get_props(app, RESOURCE).items():
        process_type, _, what = key.rpartition(".")
        if what == "memory":
            memory[process_type] = int(_number(key, value))
        elif what == "cpus":
            cpus[process_type] = _number(key, value)
    return {t: Limits(memory.get(t), cpus.get(t)) for t in sorted({*memory, *cpus})}


def store_limits(store: Store, app: str, limits: dict[str, Limits]) -> None:
    """Make the resource properties say exactly `limits` (a rollback restores a release's)."""
    values: dict[str, str] = {}
    for process_type, limit in limits.items():
        if limit.memory_bytes is not None:
            values[f"{process_type}.memory"] = str(limit.memory_bytes)
        if limit.cpus is not None:
            values[f"{process_type}.cpus"] = repr(limit.cpus)
    store.replace_props(app, RESOURCE, values)


def limits_key(process_type: str | None) -> str:
    return process_type or DEFAULT_PROCESS_TYPE


@dataclass(frozen=True, slots=True)
class Checks:
    """How new containers are checked before traffic moves (Dokku's checks:set names)."""

    wait: float
    timeout: float
    wait_to_retire: float
    disabled: frozenset[str]

    def enabled(self, process_type: str) -> bool:
        return ALL_TYPES not in self.disabled and process_type not in self.disabled


def checks_of(settings: Settings, store: Store, app: str) -> Checks:
    props = store.get_props(app, CHECKS)

    def seconds(key: str, default: float) -> float:
        return _number(f"checks {key}", props[key]) if props.get(key) else default

    disabled = frozenset(t.strip() for t in props.get("disabled", "").split(",") if t.strip())
    return Checks(
        wait=seconds("wait", settings.check_wait),
        timeout=seconds("timeout", settings.check_timeout),
        wait_to_retire=seconds("wait-to-retire", settings.wait_to_retire),
        disabled=disabled,
    )


def hostnames(settings: Settings, store: Store, app: str) -> list[str]:
    return [f"{app}.{settings.domain}", *store.list_domains(app)]


def derive_release(
    store: Store, base: Release, *, kind: ReleaseKind, description: str, user: str,
    config: dict[str, str] | None = None, formation: dict[str, int] | None = None,
    limits: dict[str, Limits] | None = None,
) -> Release:
    """A new pending release: `base`'s image and processes with the given parts changed."""
    return store.add_release(
        base.app, base.image, base.processes, base.git_sha, description,
        config=base.config if config is None else config,
        formation=base.formation if formation is None else formation,
        limits=base.limits if limits is None else limits,
        kind=kind, user=user, app_json=base.app_json,
    )


def _number(what: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DeployError(f"the setting {what} is not a number: {text!r}") from None
    if value < 0:
        raise DeployError(f"the setting {what} must not be negative: {text!r}")
    return value
