"""Records of the platform's domain: apps, releases, deploy keys, resource limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from paas.core.appjson import AppJson

# Dokku's name for the limits that apply to every process type without limits of its own.
DEFAULT_PROCESS_TYPE = "_default_"
ROUTED_TYPE = "web"


class ReleaseStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ReleaseKind(StrEnum):
    """What made a release: a push, a config change, a scale, a rollback, a limits change."""

    DEPLOY = "deploy"
    CONFIG = "config"
    SCALE = "scale"
    ROLLBACK = "rollback"
    RESOURCE = "resource"


@dataclass(frozen=True, slots=True)
class App:
    name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one process type; None means unlimited."""

    memory_bytes: int | None = None
    cpus: float | None = None

    def to_json(self) -> dict[str, int | float | None]:
        return {"memory_bytes": self.memory_bytes, "cpus": self.cpus}

    @classmethod
    def from_json(cls, data: dict[str, int | float | None]) -> Limits:
        memory, cpus = data.get("memory_bytes"), data.get("cpus")
        return cls(None if memory is None else int(memory), None if cpus is None else float(cpus))


@dataclass(frozen=True, slots=True)
class Release:
    """An immutable release vN: image, config, formation and limits, and where it came from."""

    app: str
    version: int
    image: str
    processes: dict[str, str] = field(default_factory=dict)
    git_sha: str = ""
    description: str = ""
    status: ReleaseStatus = ReleaseStatus.PENDING
    reason: str = ""
    created_at: float = 0.0
    config: dict[str, str] = field(default_factory=dict)
    # Process type -> container count; types of `processes` missing here run 0 containers.
    formation: dict[str, int] = field(default_factory=dict)
    # Process type (or DEFAULT_PROCESS_TYPE) -> limits.
    limits: dict[str, Limits] = field(default_factory=dict)
    kind: ReleaseKind = ReleaseKind.DEPLOY
    user: str = ""
    # What the pushed tree's app.json said (health checks, deploy scripts); kept for rollbacks.
    app_json: AppJson = field(default_factory=AppJson)

    @property
    def label(self) -> str:
        return f"v{self.version}"

    def count(self, process_type: str) -> int:
        return self.formation.get(process_type, 0)

    def limits_of(self, process_type: str) -> Limits:
        return self.limits.get(process_type) or self.limits.get(DEFAULT_PROCESS_TYPE) or Limits()


@dataclass(frozen=True, slots=True)
class DeployKey:
    name: str
    fingerprint: str
    public_key: str
    admin: bool
    created_at: float
