"""App repositories: bare git repos, the pre-receive hook, and exporting a commit's tree."""

from paas.git.repos import ensure_repo, export_rev, is_empty_tree, repo_path

__all__ = ["ensure_repo", "export_rev", "is_empty_tree", "repo_path"]
