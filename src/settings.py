"""Settings (environment variables prefixed ``JOBS_``, or a ``.env`` file) and the arq ``WorkerSettings``.

``arq src.settings.WorkerSettings`` and ``jobs worker`` both start the worker from :class:`WorkerSettings`.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import unquote

from arq.connections import RedisSettings
from pydantic import BaseModel, Field, FilePath, IPvAnyNetwork, RedisDsn, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from src.runner import constants as k
from src.runner.client import JobClient
from src.runner.codec import Codec
from src.runner.redact import redact_url


class SmtpSettings(BaseModel):
    """Outgoing mail for ``send_email`` (``JOBS_SMTP__HOST`` …)."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    #: ``starttls``: upgrade after connecting (port 587); ``tls``: implicit TLS (port 465);
    #: ``auto``: upgrade when the server offers it, and insist on it when credentials are set;
    #: ``none``: never (loopback relays only; refused with credentials)
    tls: Literal["auto", "starttls", "tls", "none"] = "auto"
    #: CA bundle the server's certificate must chain to (default: the system's CAs)
    ca_file: FilePath | None = None
    from_address: str = "jobs@localhost"
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _credentials_need_tls(self) -> SmtpSettings:
        if self.tls == "none" and (self.username or self.password):
            raise ValueError("SMTP credentials are never sent unencrypted: use tls=starttls, tls or auto, not none")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JOBS_", env_file=".env", env_ignore_empty=True, env_nested_delimiter="__", extra="ignore"
    )

    #: ``redis://``, ``rediss://`` (TLS) or ``unix://``; user and password may be given in the URL
    redis_url: RedisDsn = RedisDsn("redis://127.0.0.1:6379/0")
    #: ``rediss://`` only: CA bundle the server's certificate must chain to (default: the system's CAs);
    #: the certificate must also name the URL's host
    redis_ca_file: FilePath | None = None
    #: ``rediss://`` only: client certificate and its key, for servers that require one (``tls-auth-clients yes``)
    redis_cert_file: FilePath | None = None
    redis_key_file: FilePath | None = None
    queue_name: str = k.default_queue_name
    #: jobs one worker process runs at once
    max_jobs: int = Field(default=k.DEFAULT_MAX_JOBS, ge=1)
    #: timeout of jobs that do not set ``timeout_s``
    job_timeout_s: float = Field(default=k.DEFAULT_JOB_TIMEOUT_S, gt=0)
    #: a crashed worker's jobs run again after at most this long (leases are renewed every third of it)
    lease_s: float = Field(default=k.DEFAULT_LEASE_S, ge=0.3)
    #: on SIGTERM/SIGINT, how long running jobs may take to finish before they go back to the queue
    shutdown_grace_s: float = Field(default=k.DEFAULT_SHUTDOWN_GRACE_S, ge=0)
    #: how long jobs that failed for good stay in the dead-letter queue
    dlq_retention_s: float = Field(default=k.DEFAULT_DLQ_RETENTION_S, gt=0)
    #: how long results are kept (0: not kept)
    keep_result_s: float = Field(default=k.DEFAULT_KEEP_RESULT_S, ge=0)
    #: how often an idle worker looks at the queue without being woken (only plain arq producers need it)
    poll_delay_s: float = Field(default=k.DEFAULT_POLL_DELAY_S, gt=0)
    #: encoded jobs larger than this are refused at enqueue
    max_payload_bytes: int = Field(default=k.DEFAULT_MAX_PAYLOAD_BYTES, ge=256)
    #: when set, payloads are HMAC-signed for their job id and queue; workers refuse unsigned, altered or copied ones
    signing_secret: SecretStr | None = None
    #: secrets accepted for verification only, while jobs signed with them may still be queued (key rotation);
    #: a JSON list in the environment: ``JOBS_SIGNING_SECRETS_PREVIOUS='["old-secret"]'``
    signing_secrets_previous: list[SecretStr] = []
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    #: signs outgoing webhooks (``X-Jobs-Signature``); unsigned when unset
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    #: webhook targets resolving to loopback, private, link-local, metadata or other non-public addresses are
    #: refused unless inside one of these networks; a JSON list, e.g. ``'["10.20.0.0/16"]'``
    webhook_allowed_networks: list[IPvAnyNetwork] = []
    smtp: SmtpSettings = SmtpSettings()

    #: where ``make run`` serves the example API
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> Settings:
        tls_files = [f for f in ("redis_ca_file", "redis_cert_file", "redis_key_file") if getattr(self, f)]
        if tls_files and self.redis_url.scheme != "rediss":
            raise ValueError(f"{', '.join(tls_files)} apply to TLS only: use a rediss:// redis_url")
        if (self.redis_cert_file is None) != (self.redis_key_file is None):
            raise ValueError("redis_cert_file and redis_key_file go together (client certificate and its key)")
        return self

    @model_validator(mode="after")
    def _previous_secrets_need_a_secret(self) -> Settings:
        if self.signing_secrets_previous and self.signing_secret is None:
            raise ValueError("signing_secrets_previous only verify: set signing_secret too (the key that signs)")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # RedisDsn shows its password; everything else secret is a SecretStr already
        for name, value in super().__repr_args__():
            yield name, redact_url(str(value)) if name == "redis_url" else value

    def redis_settings(self) -> RedisSettings:
        url = self.redis_url
        scheme = url.scheme
        db = int((url.path or "/0").lstrip("/") or 0) if scheme != "unix" else 0
        tls = scheme == "rediss"
        return _RedisSettings(
            host=url.host or "127.0.0.1",
            port=url.port or 6379,
            unix_socket_path=url.path if scheme == "unix" else None,
            database=db,
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            ssl=tls,
            # arq checks the certificate but not that it names the host: any valid certificate would do
            ssl_cert_reqs="required",
            ssl_check_hostname=tls,
            ssl_ca_certs=str(self.redis_ca_file) if self.redis_ca_file else None,
            ssl_certfile=str(self.redis_cert_file) if self.redis_cert_file else None,
            ssl_keyfile=str(self.redis_key_file) if self.redis_key_file else None,
        )

    def codec(self) -> Codec:
        if self.signing_secret is None:
            return Codec()
        previous = [s.get_secret_value() for s in self.signing_secrets_previous]
        return Codec(self.signing_secret.get_secret_value(), previous=previous)

    async def open_client(self) -> JobClient:
        """A connected :class:`JobClient` for these settings; close it with ``await client.close()``."""
        return await JobClient.connect(
            self.redis_settings(), self.codec(), queue_name=self.queue_name, max_payload_bytes=self.max_payload_bytes
        )


class _RedisSettings(RedisSettings):
    """arq's settings, whose repr does not show the password (arq's prints every field)."""

    def __repr__(self) -> str:
        shown = {**self.__dict__, "password": "***" if self.password else None}
        return "RedisSettings({})".format(", ".join(f"{name}={value!r}" for name, value in shown.items()))


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once. Tests call ``get_settings.cache_clear()`` after changing the env."""
    return Settings()


# WorkerSettings needs the jobs and the cron table, and the jobs read settings at run time: importing them
# after everything above is defined keeps that cycle harmless.
from src import cron as _cron  # noqa: E402
from src import jobs as _jobs  # noqa: E402
from src.runner import launch as _launch  # noqa: E402

_launch.install()  # `arq src.settings.WorkerSettings` builds our Worker (see src/runner/launch.py)


class WorkerSettings:
    """Read by ``arq src.settings.WorkerSettings`` (and ``jobs worker``) to build the worker."""

    _s = get_settings()
    functions = _jobs.ALL
    cron_entries = _cron.TABLE
    codec = _s.codec()
    redis_settings = _s.redis_settings()
    queue_name = _s.queue_name
    max_jobs = _s.max_jobs
    job_timeout = _s.job_timeout_s
    keep_result = _s.keep_result_s
    poll_delay = _s.poll_delay_s
    max_payload_bytes = _s.max_payload_bytes
    lease_s = _s.lease_s
    shutdown_grace_s = _s.shutdown_grace_s
    dlq_retention_s = _s.dlq_retention_s
    log_level = _s.log_level
