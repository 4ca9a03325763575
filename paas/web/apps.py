"""The apps pages: every app with its live release and URL; one app's releases."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from paas.config import Settings
from paas.store import Store

bp = Blueprint("apps", __name__)


def _store() -> Store:
    store: Store = current_app.extensions["paas_store"]
    return store


def _settings() -> Settings:
    settings: Settings = current_app.config["PAAS_SETTINGS"]
    return settings


def _url(app: str) -> str:
    s = _settings()
    return f"http://{app}.{s.domain}:{s.http_port}/"


@bp.get("/")
def index() -> str:
    store = _store()
    rows = [(app, store.current_release(app.name), _url(app.name)) for app in store.list_apps()]
    return render_template("apps/index.html", rows=rows)


@bp.get("/apps/<name>")
def show(name: str) -> str:
    store = _store()
    app = store.get_app(name)
    return render_template(
        "apps/show.html", app=app, releases=store.list_releases(name), url=_url(name)
    )
