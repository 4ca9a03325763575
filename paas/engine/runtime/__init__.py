"""The container runtime: namespaces, rootfs, cgroups and process launch.

`Runtime` is the entry point; the launcher (launch.py, a fork of the engine), the
container's init (init.py) and the shim it becomes (shim.c) are its private helpers. The
names below load lazily, so that importing a runtime module does not load the engine side.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs the launcher ~10 ms
if TYPE_CHECKING:
    from paas.engine.runtime.engine import DEFAULT_STOP_TIMEOUT, RunResult, Runtime

__all__ = ["DEFAULT_STOP_TIMEOUT", "RunResult", "Runtime"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from paas.engine.runtime import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
