"""The dashboard's pages through Flask's test client over a real SQLite store."""

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from paas.config import Settings
from paas.core.models import ReleaseStatus
from paas.store import Store
from paas.web import create_app


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    settings = Settings.from_env({"PAAS_HOME": str(tmp_path), "PAAS_HTTP_PORT": "8080"})
    store = Store(settings.db_path)
    store.create_app("myapp")
    release = store.add_release("myapp", "sha256:abc", {"web": "x"}, "0123456789", "deploy 0123456")
    store.finish_release("myapp", release.version, ReleaseStatus.FAILED, "<script>alert(1)</script>")
    return create_app(settings).test_client()


def test_index_lists_apps(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert "myapp" in page and "http://myapp.localhost:8080/" in page


def test_app_page_shows_releases_escaped(client: FlaskClient) -> None:
    page = client.get("/apps/myapp").get_data(as_text=True)
    assert "v1" in page and "failed" in page
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_unknown_app_is_404(client: FlaskClient) -> None:
    assert client.get("/apps/nope").status_code == 404
