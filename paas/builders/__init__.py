"""Builders turn an app's source into an image: detected, not chosen by an if/elif chain."""
