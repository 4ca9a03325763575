"""Records of the platform's domain: apps, releases, deploy keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ReleaseStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class App:
    name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Release:
    app: str
    version: int
    image: str
    processes: dict[str, str] = field(default_factory=dict)
    git_sha: str = ""
    description: str = ""
    status: ReleaseStatus = ReleaseStatus.PENDING
    reason: str = ""
    created_at: float = 0.0

    @property
    def label(self) -> str:
        return f"v{self.version}"


@dataclass(frozen=True, slots=True)
class DeployKey:
    name: str
    fingerprint: str
    public_key: str
    admin: bool
    created_at: float
