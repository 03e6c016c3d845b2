"""What a dashboard is configured with, from the settings or given by the application that mounts it."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import SecretStr

from .. import constants as k
from ..codec import Codec
from ..errors import JobsError
from ..job import JobSpec


class NoCredentials(JobsError):
    """The dashboard would listen beyond loopback with no credentials set."""


class DashboardSettings(Protocol):
    """The part of the project's ``Settings`` the dashboard reads."""

    queue_name: str
    max_payload_bytes: int
    dashboard_token: SecretStr | None
    dashboard_username: str | None
    dashboard_password: SecretStr | None
    dashboard_read_only: bool

    def codec(self) -> Codec: ...


@dataclass(frozen=True, slots=True)
class DashboardOptions:
    """How a dashboard reads Redis and who may use it.

    With neither ``token`` nor basic credentials the dashboard answers loopback clients only (and refuses a
    request that came through a proxy); ``read_only`` leaves out every action (routes and buttons).
    """

    queue_name: str = k.default_queue_name
    codec: Codec = field(default_factory=Codec)
    max_payload_bytes: int = k.DEFAULT_MAX_PAYLOAD_BYTES
    #: the jobs the enqueue form offers (the worker's registered jobs)
    jobs: Sequence[JobSpec[Any, Any]] = ()
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    read_only: bool = False
    title: str = "hasten"

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together (HTTP basic credentials)")

    @property
    def has_credentials(self) -> bool:
        return self.token is not None or self.username is not None

    @classmethod
    def from_settings(cls, settings: DashboardSettings, **overrides: Any) -> DashboardOptions:
        values: dict[str, Any] = {
            "queue_name": settings.queue_name, "codec": settings.codec(),
            "max_payload_bytes": settings.max_payload_bytes, "token": settings.dashboard_token,
            "username": settings.dashboard_username, "password": settings.dashboard_password,
            "read_only": settings.dashboard_read_only,
        }  # fmt: skip
        return cls(**{**values, **overrides})

    def check_bind(self, host: str) -> None:
        """Refuse to serve on ``host`` beyond loopback without credentials (:class:`NoCredentials`)."""
        if not self.has_credentials and not is_loopback(host):
            raise NoCredentials(
                f"the dashboard would listen on {host} with no credentials: set JOBS_DASHBOARD_TOKEN (or "
                "JOBS_DASHBOARD_USERNAME and JOBS_DASHBOARD_PASSWORD), or bind it to 127.0.0.1"
            )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, maybe in brackets) is this machine's loopback."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
