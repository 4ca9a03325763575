"""Schedulers run a release's processes; `local` runs them with our engine on this host."""
