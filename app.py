"""The WSGI app of the dashboard."""

from paas.config import Settings
from paas.web import create_app

app = create_app(Settings.from_env())
