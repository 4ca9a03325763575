"""The Engine: one engine root's image store, runtime and network, wired together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paas.engine.images import ImageStore
from paas.engine.network import Network
from paas.engine.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Engine:
    images: ImageStore
    network: Network
    runtime: Runtime

    @classmethod
    def open(cls, root: Path, bridge: str, subnet: str) -> Engine:
        network = Network(root / "network", bridge, subnet)
        return cls(ImageStore(root), network, Runtime(root, network))
