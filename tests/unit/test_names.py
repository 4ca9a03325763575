import pytest

from paas.core.names import deploy_branch, validate_app_name, validate_process_type
from paas.errors import NameInvalidError


@pytest.mark.parametrize("name", ["a", "myapp", "my-app-2", "a" * 63])
def test_valid_app_names(name: str) -> None:
    assert validate_app_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "1app", "My", "my_app", "a" * 64, "-x", "app;rm", "../etc", "app\n", "ä"]
)
def test_invalid_app_names(name: str) -> None:
    with pytest.raises(NameInvalidError):
        validate_app_name(name)


@pytest.mark.parametrize("name", ["web", "worker", "clock-2", "1x"])
def test_valid_process_types(name: str) -> None:
    assert validate_process_type(name) == name


@pytest.mark.parametrize("name", ["Web", "-web", "web-", "we_b", ""])
def test_invalid_process_types(name: str) -> None:
    with pytest.raises(NameInvalidError):
        validate_process_type(name)


def test_deploy_branches() -> None:
    assert deploy_branch("refs/heads/main") == "main"
    assert deploy_branch("refs/heads/master") == "master"
    assert deploy_branch("refs/heads/feature") is None
    assert deploy_branch("refs/tags/main") is None
