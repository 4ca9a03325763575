"""paas: a self-hosted mini-PaaS with its own container engine."""

__version__ = "0.1.0"
