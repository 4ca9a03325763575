"""Dockerfile builds: parsing, variable substitution, and the builder that runs the steps."""
