"""Validation of the names users choose: apps, process types, SSH key names, git refs."""

from __future__ import annotations

import re

from paas.errors import ConfigInvalidError, NameInvalidError

APP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
PROCESS_TYPE_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
DOMAIN_RE = re.compile(
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
MAX_DOMAIN = 253
CONFIG_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_CONFIG_KEY = 255
DEPLOY_BRANCHES = ("main", "master")


def validate_app_name(name: str) -> str:
    if not APP_NAME_RE.fullmatch(name):
        raise NameInvalidError(
            f"invalid app name {name!r}: use 1-63 characters, lowercase letters, digits and '-', "
            "starting with a letter"
        )
    return name


def validate_process_type(name: str) -> str:
    if not PROCESS_TYPE_RE.fullmatch(name):
        raise NameInvalidError(
            f"invalid process type {name!r}: it must be a DNS label "
            "(lowercase letters, digits and '-', not starting or ending with '-')"
        )
    return name


def validate_key_name(name: str) -> str:
    if not KEY_NAME_RE.fullmatch(name):
        raise NameInvalidError(
            f"invalid key name {name!r}: use letters, digits, '_', '.', '@' and '-' (max 64)"
        )
    return name


def validate_config_key(key: str) -> str:
    if len(key) > MAX_CONFIG_KEY or not CONFIG_KEY_RE.fullmatch(key):
        raise ConfigInvalidError(
            f"invalid config key {key!r}: use letters, digits and '_', not starting with a digit"
        )
    return key


def validate_config_value(key: str, value: str) -> str:
    """Any string an environment variable can carry: everything but the NUL character."""
    if "\0" in value:
        raise ConfigInvalidError(f"the value of {key} contains a NUL character")
    return value


def validate_domain(domain: str) -> str:
    """A host name (or `*.name`) for the router: lowercase DNS labels, at most 253 characters."""
    name = domain.strip().lower().rstrip(".")
    if not name or len(name) > MAX_DOMAIN or not DOMAIN_RE.fullmatch(name):
        raise NameInvalidError(f"invalid domain {domain!r}: use a DNS name like www.example.com")
    return name


def deploy_branch(ref: str) -> str | None:
    """The branch a pushed ref deploys, or None if pushes to it are only stored."""
    prefix = "refs/heads/"
    if ref.startswith(prefix) and ref[len(prefix):] in DEPLOY_BRANCHES:
        return ref[len(prefix):]
    return None
