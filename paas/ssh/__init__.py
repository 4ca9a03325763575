"""The SSH front door: key auth, `git push`/`git fetch` passthrough and remote CLI commands."""
