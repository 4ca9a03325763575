"""PaasError and its children: the only exceptions that cross package boundaries."""

from __future__ import annotations


class PaasError(Exception):
    """Base of every error the platform reports to a user."""

    exit_code = 1


class UsageError(PaasError):
    """A command was called with the wrong arguments."""

    exit_code = 2


class NameInvalidError(PaasError):
    """An app, process type or key name breaks the naming rules."""


class ProcfileInvalidError(PaasError):
    """A Procfile cannot be parsed."""


class AppNotFoundError(PaasError):
    """No app by that name."""


class AppExistsError(PaasError):
    """An app by that name exists already."""


class KeyInvalidError(PaasError):
    """An SSH public key cannot be parsed or is already registered."""


class KeyNotFoundError(PaasError):
    """No SSH key by that name."""


class StateError(PaasError):
    """The platform's state database cannot be read or written."""


class ImageNotFoundError(PaasError):
    """No image by that reference."""


class ImageInvalidError(PaasError):
    """Image data (a layer, manifest or config) is malformed or does not match its digest."""


class LayerUnsafeError(ImageInvalidError):
    """A layer tar tries to write outside its root, or holds an entry we refuse."""


class DockerfileError(PaasError):
    """A Dockerfile cannot be parsed or one of its instructions is wrong."""


class BuildError(PaasError):
    """An app could not be built."""


class ContainerError(PaasError):
    """A container could not be created, started, stopped or found."""


class NetworkError(PaasError):
    """The bridge, an address or a veth could not be set up."""


class DeployError(PaasError):
    """A release could not be started, checked or routed; the previous release keeps serving."""


class RouterError(PaasError):
    """nginx rejected a configuration or could not be reloaded."""


class GitError(PaasError):
    """A git operation on an app repository failed."""


class JobError(PaasError):
    """A background job could not be queued or followed."""


class BlobNotFoundError(ImageInvalidError):
    """A content-store blob that an image refers to is missing."""


class RegistryError(PaasError):
    """A registry could not be reached, refused our credentials, or answered with an error."""


class ImageInUseError(PaasError):
    """An image cannot be removed: a container or one of an app's kept releases uses it."""


class PermissionDeniedError(PaasError):
    """The user's key may not do this (not an admin, not a member of the app)."""


class ConfigInvalidError(PaasError):
    """A config key breaks the naming rule, or a config value cannot be stored."""


class DomainExistsError(PaasError):
    """A domain is already routed to an app."""


class ReleaseNotFoundError(PaasError):
    """An app has no release with that version (or none at all)."""


class FormationInvalidError(PaasError):
    """A scale names a process type the app's release does not declare, or a bad count."""
