"""The app's own commands around a rollout: the Procfile's `release` process before any
traffic moves (its failure aborts the deploy), and app.json's postdeploy script after."""

from __future__ import annotations

from paas.core.models import Release
from paas.deploy.context import Deployment


def before_traffic(ctx: Deployment, release: Release) -> None:
    """Run before the new formation starts; a PaasError aborts the rollout."""


def after_traffic(ctx: Deployment, release: Release) -> None:
    """Run once `release` serves."""
