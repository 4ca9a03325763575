"""Commands that run the platform itself: up, down, and the processes the Procfile names."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from paas.cli.context import Context, pass_ctx
from paas.cli.supervisor import Supervisor
from paas.config import Settings
from paas.core.procfile import parse_procfile
from paas.errors import PaasError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# A first start builds the base and stack images (debootstrap and apt: ~3 min, more when busy).
READY_TIMEOUT_S = 900.0
DOWN_TIMEOUT_S = 30.0


def _pidfile(settings: Settings) -> Path:
    return settings.run_dir / "platform.pid"


def _platform_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, **settings.to_env()}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    return env


def _prepare(settings: Settings) -> None:
    from paas.deploy.pipeline import open_engine
    from paas.engine.baseimages import ensure_base_images

    for path in (settings.home, settings.run_dir, settings.logs_dir, settings.repos_dir):
        path.mkdir(parents=True, exist_ok=True)
    settings.home.chmod(0o711)
    engine = open_engine(settings)
    ensure_base_images(engine.images, click.echo)
    engine.network.ensure_bridge()


def _banner(settings: Settings) -> None:
    host = socket.gethostname()
    click.echo(f"-----> paas is up (home {settings.home})")
    click.echo("       Add a deploy key:  paas ssh-keys:add NAME ~/.ssh/id_ed25519.pub")
    click.echo(f"       Add a git remote:  git remote add paas ssh://git@{host}:{settings.ssh_port}/APP")
    click.echo(f"       Dashboard:         http://{host}:{settings.dashboard_port}/")
    click.echo(f"       Apps answer at:    http://APP.{settings.domain}:{settings.http_port}/")


@click.command("up")
@click.option("--detach", is_flag=True, help="Run in the background; return once it answers.")
@pass_ctx
def up(ctx: Context, detach: bool) -> None:
    """Start every platform process from the Procfile (Ctrl-C stops them)."""
    settings = ctx.settings
    if _running_pid(settings):
        raise PaasError(f"the platform of {settings.home} is already running")
    if detach:
        _up_detached(settings)
        return
    _prepare(settings)
    commands = parse_procfile((PROJECT_ROOT / "Procfile").read_text())
    supervisor = Supervisor(commands, _platform_env(settings))
    _pidfile(settings).write_text(str(os.getpid()))
    try:
        supervisor.start()
        _banner(settings)
        code = supervisor.wait()
    finally:
        _pidfile(settings).unlink(missing_ok=True)
    if code:
        raise click.exceptions.Exit(code)


def _up_detached(settings: Settings) -> None:
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / "platform.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "paas.cli.main", "up"], env=_platform_env(settings),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            cwd=PROJECT_ROOT,
        )
    click.echo(f"-----> Starting the platform in the background (pid {proc.pid}, log {log_path})")
    ports = {"ssh": settings.ssh_port, "router": settings.http_port, "dashboard": settings.dashboard_port}
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = dict(ports)
    while waiting:
        if proc.poll() is not None:
            raise PaasError(f"the platform exited with status {proc.returncode}:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            names = ", ".join(waiting)
            raise PaasError(f"not answering after {READY_TIMEOUT_S:.0f}s: {names}\n{_tail(log_path)}")
        waiting = {n: p for n, p in waiting.items() if not _accepts(p)}
        time.sleep(0.2)
    _banner(settings)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _running_pid(settings: Settings) -> int | None:
    try:
        pid = int(_pidfile(settings).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return pid if b"up" in cmdline and any(b"paas" in part for part in cmdline) else None


@click.command("down")
@pass_ctx
def down(ctx: Context) -> None:
    """Stop the platform processes and the app containers of this PAAS_HOME; data stays."""
    from paas.deploy.pipeline import open_engine

    settings = ctx.settings
    pid = _running_pid(settings)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + DOWN_TIMEOUT_S
        while Path(f"/proc/{pid}").exists() and _running_pid(settings) and time.monotonic() < deadline:
            time.sleep(0.1)
        click.echo("-----> Platform processes stopped")
    else:
        click.echo("-----> No platform processes were running")
    if settings.engine_root.exists():
        open_engine(settings).runtime.cleanup_all()
        click.echo("-----> App containers stopped, network removed")


@click.command("redis")
@pass_ctx
def redis(ctx: Context) -> None:
    """Run the platform's redis-server (when PAAS_REDIS_URL is not set)."""
    settings = ctx.settings
    if settings.redis_url:
        click.echo(f"using the external redis at {settings.redis_url}")
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        return
    settings.redis_dir.mkdir(parents=True, exist_ok=True)
    settings.redis_dir.chmod(0o700)
    sock = settings.redis_dir / "redis.sock"
    os.execvp("redis-server", [
        "redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
        "--dir", str(settings.redis_dir), "--daemonize", "no", "--save", "60 1",
        "--appendonly", "no", "--logfile", "",
    ])


def _unlink_stale_socket(path: Path) -> None:
    """An nginx killed with SIGKILL leaves its unix socket, and the next one cannot bind it."""
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except ConnectionRefusedError:  # nobody listens: stale
            path.unlink(missing_ok=True)
        except OSError:
            pass  # no such file, or a live nginx: leave it


@click.command("router")
@pass_ctx
def router(ctx: Context) -> None:
    """Run the platform's nginx in the foreground."""
    from paas.router.nginx import Nginx

    nginx = Nginx(ctx.settings)
    _unlink_stale_socket(nginx.prefix / "control.sock")
    nginx.prepare()
    argv = nginx.foreground_argv()
    os.execvp(argv[0], argv)


@click.command("web")
@pass_ctx
def web(ctx: Context) -> None:
    """Run the dashboard under gunicorn."""
    port = ctx.settings.dashboard_port
    os.chdir(PROJECT_ROOT)
    os.execv(sys.executable, [
        sys.executable, "-m", "gunicorn", "--bind", f"0.0.0.0:{port}", "--workers", "2",
        "--access-logfile", "-", "app:app",
    ])


COMMANDS = [up, down, redis, router, web]
