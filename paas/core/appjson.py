"""app.json: what an app's repository says about its deploys (Dokku's and Heroku's file).

The parts the platform uses: `healthchecks` (Dokku's checks of new containers, per process
type), `formation` (the counts of a first deploy) and `scripts.dokku.predeploy` /
`postdeploy`. A release keeps its AppJson, so a rollback checks and runs what that release
said. Pure: parsing and validation, no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

APP_JSON = "app.json"


class CheckType(StrEnum):
    """Dokku's check types; a deploy runs startup and readiness checks before the switch
    (liveness checks are for the running app, which Dokku leaves to the scheduler)."""

    STARTUP = "startup"
    READINESS = "readiness"
    LIVENESS = "liveness"


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One entry of app.json's `healthchecks.<type>` list, with Dokku's field names and
    defaults. With a `path`, an HTTP GET of the container's `port` must answer 2xx (and hold
    `content`, if set); without one, the check is `listening` (the port accepts) and/or
    `uptime` (the process stays up that long)."""

    type: CheckType = CheckType.STARTUP
    name: str = ""
    path: str = ""
    port: int = 5000
    attempts: int = 3
    timeout: float = 5.0
    wait: float = 5.0  # seconds between attempts
    initial_delay: float = 0.0  # seconds before the first attempt
    content: str = ""
    listening: bool = False
    uptime: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HealthCheck:
        return cls(**{**data, "type": CheckType(data.get("type", CheckType.STARTUP))})


@dataclass(frozen=True, slots=True)
class AppJson:
    """The validated parts of an app.json; empty when the app has none."""

    healthchecks: dict[str, tuple[HealthCheck, ...]] = field(default_factory=dict)
    formation: dict[str, int] = field(default_factory=dict)
    predeploy: str = ""
    postdeploy: str = ""

    def checks_of(self, process_type: str) -> tuple[HealthCheck, ...]:
        return self.healthchecks.get(process_type, ())

    def to_json(self) -> dict[str, Any]:
        return {
            "healthchecks": {t: [c.to_json() for c in cs] for t, cs in self.healthchecks.items()},
            "formation": dict(self.formation),
            "predeploy": self.predeploy,
            "postdeploy": self.postdeploy,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AppJson:
        return cls(
            healthchecks={t: tuple(HealthCheck.from_json(c) for c in cs)
                          for t, cs in data.get("healthchecks", {}).items()},
            formation={t: int(n) for t, n in data.get("formation", {}).items()},
            predeploy=data.get("predeploy", ""),
            postdeploy=data.get("postdeploy", ""),
        )
