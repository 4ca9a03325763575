"""Command line of the platform: one dispatcher for the local `paas` command and for SSH."""
