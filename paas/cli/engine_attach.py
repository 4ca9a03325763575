"""`paas engine run` in the foreground: the output streamed to us, or a session (`-i`, `-t`).

Without -i/-t the container's lines come to our stdout as it runs (Runtime.run). With them we
attach to the shim over a socket (Runtime.attach_start): our stdin goes in, the output comes
out, through the container's own pty with -t; without a tty our signals go to the container.
The exit code is the container's; Docker's 125 when it could not be run at all.
"""

from __future__ import annotations

import contextlib
import signal as signals
import sys
from collections.abc import Iterator

import click

from paas.engine.containers import ContainerSpec
from paas.engine.runtime import Runtime
from paas.errors import ContainerError

EXIT_START_FAILED = 125  # Docker's code when the container could not be run at all
PROXIED_SIGNALS = (signals.SIGINT, signals.SIGTERM, signals.SIGHUP, signals.SIGQUIT,
                   signals.SIGUSR1, signals.SIGUSR2)


def start_failure(runtime: Runtime, name: str, exc: ContainerError) -> click.exceptions.Exit:
    """Report a failed start; the exit code is the container's (127: no such command)."""
    click.echo(f"error: {exc}", err=True)
    code = next((c.exit_code for c in runtime.list() if c.name == name), None)
    return click.exceptions.Exit(code or EXIT_START_FAILED)


def _remove_named(runtime: Runtime, name: str) -> None:
    for container in runtime.list():
        if container.name == name:
            runtime.remove(container.id, timeout=0)


def run_attached(runtime: Runtime, spec: ContainerSpec, remove: bool) -> int:
    try:
        result = runtime.run(spec, click.echo)
    except BaseException as exc:  # a failed start, or ^C: --rm still removes what run() made
        failure = start_failure(runtime, spec.name, exc) if isinstance(exc, ContainerError) else None
        if remove:
            _remove_named(runtime, spec.name)
        if failure is None:
            raise
        raise failure from None
    if remove:
        runtime.remove(result.container_id, timeout=0)
    return result.exit_code


def run_with_session(runtime: Runtime, spec: ContainerSpec, remove: bool) -> int:
    """`-i`/`-t` in the foreground: our stdin goes in (with -i), the output comes out, through
    the container's pty with -t; the container's exit code."""
    from paas.cli import terminal  # only sessions need it

    stdin = sys.stdin.fileno() if spec.interactive else None
    size = terminal.window_size(terminal.size_source(stdin, 1))
    container = runtime.create(spec)
    try:
        try:
            sock = runtime.attach_start(container.id, size if spec.tty else None)
        except ContainerError as exc:
            raise start_failure(runtime, spec.name, exc) from None
        proxy = contextlib.nullcontext() if spec.tty else _proxied_signals(runtime, container.id)
        with sock, proxy:
            terminal.attach(sock, stdin, spec.tty)
        code = runtime.wait(container.id).exit_code
        return EXIT_START_FAILED if code is None else code
    finally:
        if remove:
            runtime.remove(container.id, timeout=0)


@contextlib.contextmanager
def _proxied_signals(runtime: Runtime, container_id: str) -> Iterator[None]:
    """Docker's --sig-proxy without a tty (with one, ^C is a byte for the container): the
    signals we get go to the container instead."""
    from paas.cli import terminal

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ContainerError):  # removed meanwhile
            runtime.kill(container_id, signum)

    with terminal.signals_handled(PROXIED_SIGNALS, forward):
        yield
