"""Image configs: what a container of an image runs (the OCI ``config`` object) and the
history of the steps that made the image, with their OCI JSON forms."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paas.errors import ImageInvalidError


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """What a container made from the image runs, and how (the OCI ``config`` object)."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    stop_signal: str = ""
    # Docker's extensions of the OCI config, which OCI tools carry through unchanged.
    healthcheck: Mapping[str, Any] | None = None  # {"Test": [...], "Interval": ns, ...}
    shell: tuple[str, ...] | None = None
    on_build: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A private sorted copy: the caller's dict may change later; JSON order stays stable.
        object.__setattr__(self, "labels", dict(sorted(dict(self.labels).items())))

    def replace(self, **changes: Any) -> ImageConfig:
        return dataclasses.replace(self, **changes)

    def env_dict(self) -> dict[str, str]:
        return dict(item.partition("=")[::2] for item in self.env)

    def with_env(self, key: str, value: str) -> ImageConfig:
        """A copy with ``key`` set, keeping the position of an existing entry."""
        entry = f"{key}={value}"
        if key not in self.env_dict():
            return self.replace(env=(*self.env, entry))
        return self.replace(env=tuple(entry if e.partition("=")[0] == key else e for e in self.env))

    def to_oci(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "Env": list(self.env) or None,
            "Cmd": None if self.cmd is None else list(self.cmd),
            "Entrypoint": None if self.entrypoint is None else list(self.entrypoint),
            "WorkingDir": self.working_dir or None,
            "User": self.user or None,
            "ExposedPorts": {p: {} for p in self.exposed_ports} or None,
            "Volumes": {v: {} for v in self.volumes} or None,
            "Labels": dict(self.labels) or None,
            "StopSignal": self.stop_signal or None,
            "Healthcheck": None if self.healthcheck is None else dict(self.healthcheck),
            "Shell": None if self.shell is None else list(self.shell),
            "OnBuild": list(self.on_build) or None,
        }
        return {k: v for k, v in fields.items() if v is not None}

    @classmethod
    def from_oci(cls, doc: Mapping[str, Any] | None) -> ImageConfig:
        """Read an OCI ``config`` object; ImageInvalidError when a field has the wrong type."""
        doc = doc or {}
        if not isinstance(doc, Mapping):
            raise ImageInvalidError("image config: 'config' is not an object")
        healthcheck = doc.get("Healthcheck")
        if healthcheck is not None and not isinstance(healthcheck, Mapping):
            raise ImageInvalidError("image config: Healthcheck is not an object")
        return cls(
            env=_strings(doc, "Env") or (),
            cmd=_strings(doc, "Cmd"),
            entrypoint=_strings(doc, "Entrypoint"),
            working_dir=_string(doc, "WorkingDir"),
            user=_string(doc, "User"),
            exposed_ports=tuple(sorted(_object(doc, "ExposedPorts"))),
            volumes=tuple(sorted(_object(doc, "Volumes"))),
            labels={k: str(v) for k, v in _object(doc, "Labels").items()},
            stop_signal=_string(doc, "StopSignal"),
            healthcheck=healthcheck,
            shell=_strings(doc, "Shell"),
            on_build=_strings(doc, "OnBuild") or (),
        )


def _strings(doc: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageInvalidError(f"image config: {key} is not a list of strings")
    return tuple(value)


def _string(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key) or ""
    if not isinstance(value, str):
        raise ImageInvalidError(f"image config: {key} is not a string")
    return value


def _object(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, Mapping):
        raise ImageInvalidError(f"image config: {key} is not an object")
    return value


@dataclass(frozen=True, slots=True)
class History:
    """One step that made the image (an OCI history entry)."""

    created: str
    created_by: str
    empty_layer: bool = False
    comment: str = ""

    def to_oci(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"created": self.created, "created_by": self.created_by}
        if self.comment:
            doc["comment"] = self.comment
        if self.empty_layer:
            doc["empty_layer"] = True
        return doc
