"""Rendering of the router's nginx configuration from the jinja2 templates in nginx/. Pure."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "nginx"


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_main(prefix: Path, http_port: int) -> str:
    return _env().get_template("nginx.conf.j2").render(prefix=prefix, http_port=http_port)


def render_app(
    app: str, prefix: Path, http_port: int, hostnames: list[str], upstreams: list[str],
    generation: str = "0",
) -> str:
    """A server block for `app`; `upstreams` are `IP:PORT` of its web containers. `generation`
    is answered on the control socket, so the applier can see when nginx serves this file."""
    return _env().get_template("app.conf.j2").render(
        app=app, prefix=prefix, http_port=http_port, hostnames=hostnames, upstreams=upstreams,
        generation=generation,
    )
