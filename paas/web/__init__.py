"""The dashboard: a Flask app built by create_app(settings), one blueprint per feature."""

from __future__ import annotations

from flask import Flask

from paas.config import Settings
from paas.errors import AppNotFoundError
from paas.store import Store


def create_app(settings: Settings) -> Flask:
    app = Flask(__name__)
    app.config["PAAS_SETTINGS"] = settings
    app.extensions["paas_store"] = Store(settings.db_path)

    from paas.web import apps

    app.register_blueprint(apps.bp)

    @app.errorhandler(AppNotFoundError)
    def not_found(exc: AppNotFoundError) -> tuple[str, int]:
        return str(exc), 404

    return app
