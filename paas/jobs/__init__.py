"""Background jobs: the deploy queue, its tasks and the per-job log stream (the only rq user)."""
