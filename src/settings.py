"""Settings (environment variables prefixed ``JOBS_``, or a ``.env`` file) and the arq ``WorkerSettings``.

``arq src.settings.WorkerSettings`` and ``jobs worker`` both start the worker from :class:`WorkerSettings`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from urllib.parse import unquote

from arq.connections import RedisSettings
from pydantic import BaseModel, Field, RedisDsn, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from src.runner import constants as k
from src.runner.client import JobClient
from src.runner.codec import Codec


class SmtpSettings(BaseModel):
    """Outgoing mail for ``send_email`` (``JOBS_SMTP__HOST`` …)."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    #: ``starttls``: upgrade after connecting (port 587); ``tls``: implicit TLS (port 465);
    #: ``auto``: upgrade when the server offers it; ``none``: never (loopback relays only)
    tls: Literal["auto", "starttls", "tls", "none"] = "auto"
    from_address: str = "jobs@localhost"
    timeout_s: float = Field(default=30.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JOBS_", env_file=".env", env_ignore_empty=True, env_nested_delimiter="__", extra="ignore"
    )

    #: ``redis://``, ``rediss://`` (TLS) or ``unix://``; user and password may be given in the URL
    redis_url: RedisDsn = RedisDsn("redis://127.0.0.1:6379/0")
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
    #: when set, payloads are HMAC-signed and workers refuse unsigned or altered ones
    signing_secret: SecretStr | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    #: signs outgoing webhooks (``X-Jobs-Signature``); unsigned when unset
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    smtp: SmtpSettings = SmtpSettings()

    #: where ``make run`` serves the example API
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)

    def redis_settings(self) -> RedisSettings:
        url = self.redis_url
        scheme = url.scheme
        db = int((url.path or "/0").lstrip("/") or 0) if scheme != "unix" else 0
        return RedisSettings(
            host=url.host or "127.0.0.1",
            port=url.port or 6379,
            unix_socket_path=url.path if scheme == "unix" else None,
            database=db,
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            ssl=scheme == "rediss",
        )

    def codec(self) -> Codec:
        return Codec(self.signing_secret.get_secret_value() if self.signing_secret else None)

    async def open_client(self) -> JobClient:
        """A connected :class:`JobClient` for these settings; close it with ``await client.close()``."""
        return await JobClient.connect(
            self.redis_settings(), self.codec(), queue_name=self.queue_name, max_payload_bytes=self.max_payload_bytes
        )


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
