"""Settings (environment variables prefixed ``JOBS_``, or a ``.env`` file) and the arq ``WorkerSettings``.

``arq src.settings.WorkerSettings`` and ``hasten worker`` both start the worker from :class:`WorkerSettings`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from arq.connections import RedisSettings
from pydantic import (
    BaseModel,
    Field,
    FilePath,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from src.runner import constants as k
from src.runner import redis_url
from src.runner.client import JobClient
from src.runner.codec import Codec
from src.runner.errors import JobsError, SettingsInvalid
from src.runner.keyspace import hash_tag
from src.runner.loop_watch import DEFAULT_LOOP_LAG_WARN_S
from src.runner.metrics_config import MetricsConfig
from src.runner.offload import DEFAULT_JOB_PROCESSES, DEFAULT_SYNC_THREADS
from src.runner.sync_client import SyncJobClient
from src.runner.telemetry import setup_tracing

#: the project's directory (a clone), home of the default state dir
PROJECT_DIR = Path(__file__).resolve().parent.parent


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

    #: ``redis://``, ``rediss://`` (TLS) or ``unix:///path/to/redis.sock``; user and password may be given in
    #: the URL. Unset: the embedded Redis of ``make run`` (a socket in the state dir), see :meth:`redis_target`
    redis_url: str | None = None
    #: Redis Sentinel: the sentinels' addresses, ``host:port`` separated by commas. Then ``redis_url``'s host is
    #: the master's name as the sentinels know it (``redis://:password@mymaster/0``), its password, user, database
    #: and scheme (``rediss``: TLS to the master and the sentinels) apply to the master; see README "Scaling out"
    redis_sentinels: str | None = None
    #: the sentinels' own password (``requirepass`` in their configuration), when they have one
    redis_sentinel_password: SecretStr | None = None
    #: Redis Cluster: ``redis_url`` names one node of the cluster (any; the client learns the others from it), its
    #: password, user and scheme (``rediss``: TLS to every node) apply to all nodes; database 0 only. Every queue
    #: must be named with a hash tag (``{orders}``); see README "Scaling out"
    redis_cluster: bool = False
    #: ``rediss://`` only: CA bundle the server's certificate must chain to (default: the system's CAs);
    #: the certificate must also name the URL's host
    redis_ca_file: FilePath | None = None
    #: ``rediss://`` only: client certificate and its key, for servers that require one (``tls-auth-clients yes``)
    redis_cert_file: FilePath | None = None
    redis_key_file: FilePath | None = None
    #: where the embedded Redis keeps its data and its socket
    state_dir: Path = PROJECT_DIR / ".state"
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
    #: a job's result larger than this, encoded, fails the job (dead-lettered) instead of being stored
    max_result_bytes: int = Field(default=k.DEFAULT_MAX_RESULT_BYTES, ge=256)
    #: when set, payloads are HMAC-signed for their job id and queue; workers refuse unsigned, altered or copied ones
    signing_secret: SecretStr | None = None
    #: secrets accepted for verification only, while jobs signed with them may still be queued (key rotation);
    #: a JSON list in the environment: ``JOBS_SIGNING_SECRETS_PREVIOUS='["old-secret"]'``
    signing_secrets_previous: list[SecretStr] = []
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: the database whose outbox a worker relays to Redis (``enqueue_in``; ``postgresql+asyncpg://…``); unset: none
    outbox_url: SecretStr | None = None
    #: sync jobs (plain ``def``) one worker runs at once in its own threads; more wait for a free thread
    sync_threads: int = Field(default=DEFAULT_SYNC_THREADS, ge=1)
    #: child processes one worker keeps for ``@job(process=True)`` (CPU-bound) jobs; default: the CPU count
    job_processes: int = Field(default=DEFAULT_JOB_PROCESSES, ge=1)
    #: an event loop blocked this long (a job calling time.sleep or requests) is logged with the job (0: not logged)
    loop_lag_warn_s: float = Field(default=DEFAULT_LOOP_LAG_WARN_S, ge=0)
    #: ``hasten worker``: this many worker processes under one supervisor (unset: one process, no supervisor)
    workers: int | None = Field(default=None, ge=1)
    #: under a supervisor: a worker that started this many jobs drains and is replaced
    max_jobs_per_child: int | None = Field(default=None, ge=1)
    #: under a supervisor: a worker whose resident memory grew past this drains and is replaced
    max_memory_per_child_mib: int | None = Field(default=None, ge=1)
    #: ``text``: readable lines (development); ``json``: one JSON object per line (production; the ``json-logs``
    #: extra). Either way a line logged inside a job names it: job id, function, try, queue
    log_format: Literal["text", "json"] = "text"
    #: OpenTelemetry traces (the ``otel`` extra), to the tracer provider the process configured: ``parent`` (a job's
    #: spans are children of its enqueue's) or ``link`` (a trace of their own, linked to it); ``off`` by default
    tracing: Literal["off", "parent", "link"] = "off"
    #: workers report failed tries and dead letters to Sentry (the ``sentry`` extra); unset: no Sentry
    sentry_dsn: SecretStr | None = None

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        return None if value is None else redis_url.check(value)

    @field_validator("redis_sentinels")
    @classmethod
    def _check_sentinels(cls, value: str | None) -> str | None:
        if value is not None:
            sentinel_addresses(value)  # raises ValueError on a bad address
        return value

    @model_validator(mode="after")
    def _cluster_needs_a_node(self) -> Settings:
        if not self.redis_cluster:
            return self
        if self.redis_sentinels is not None:
            raise ValueError("redis_cluster and redis_sentinels exclude each other: a cluster fails over by itself")
        if self.redis_url is None or urlsplit(self.redis_url).scheme == "unix":
            raise ValueError("with redis_cluster, redis_url names one node of the cluster: redis://host:port")
        if redis_url.redis_settings(self.redis_url).database != 0:
            raise ValueError("a Redis Cluster has database 0 only: drop the database from redis_url")
        if not hash_tag(self.queue_name):
            raise ValueError(
                f"on a Redis Cluster a queue is named with a hash tag, so that its keys share one slot: "
                f"use '{{{self.queue_name}}}' (JOBS_QUEUE_NAME)"
            )
        return self

    @model_validator(mode="after")
    def _sentinels_need_a_master(self) -> Settings:
        if self.redis_sentinels is None:
            if self.redis_sentinel_password is not None:
                raise ValueError("redis_sentinel_password needs redis_sentinels (the sentinels' addresses)")
            return self
        if self.redis_url is None or urlsplit(self.redis_url).scheme == "unix":
            raise ValueError(
                "with redis_sentinels, redis_url names the master as the sentinels know it: redis://mymaster/0"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        # `debug` is as good as `DEBUG`; anything else is left as typed, for the error message to show
        known = ("DEBUG", "INFO", "WARNING", "ERROR")
        return value.upper() if isinstance(value, str) and value.upper() in known else value

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

    #: where ``hasten web`` (and ``make run``) serves the dashboard; a host other than loopback needs credentials
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8001, ge=1, le=65535)
    #: the dashboard accepts ``Authorization: Bearer <token>`` (or a sign-in with it); unset with no basic
    #: credentials either, it answers loopback clients only
    dashboard_token: SecretStr | None = None
    #: HTTP basic credentials for the dashboard (both or neither)
    dashboard_username: str | None = None
    dashboard_password: SecretStr | None = None
    #: the dashboard shows everything and changes nothing: no action routes, no buttons
    dashboard_read_only: bool = False

    #: the worker serves ``/metrics``, ``/livez`` and ``/readyz`` on this port (unset: no endpoint, no metrics);
    #: under ``hasten worker --workers N`` the supervisor serves it for the host
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    #: the endpoint's address; ``0.0.0.0`` in a container, so that Prometheus and the probes reach it
    metrics_host: str = "127.0.0.1"
    #: prometheus-client's multiprocess directory: worker processes of one host record there and one endpoint adds
    #: them up (``hasten worker --workers N`` empties it at start)
    metrics_dir: Path | None = None
    #: the endpoint reads the queue gauges from Redis at scrape time (off on all hosts but one, if you like)
    metrics_queue_gauges: bool = True

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> Settings:
        tls_files = [f for f in ("redis_ca_file", "redis_cert_file", "redis_key_file") if getattr(self, f)]
        if tls_files and urlsplit(self.redis_target()).scheme != "rediss":
            raise ValueError(f"{', '.join(tls_files)} apply to TLS only: use a rediss:// redis_url")
        if (self.redis_cert_file is None) != (self.redis_key_file is None):
            raise ValueError("redis_cert_file and redis_key_file go together (client certificate and its key)")
        return self

    @model_validator(mode="after")
    def _basic_credentials_go_together(self) -> Settings:
        if (self.dashboard_username is None) != (self.dashboard_password is None):
            raise ValueError("dashboard_username and dashboard_password go together (HTTP basic credentials)")
        return self

    @model_validator(mode="after")
    def _previous_secrets_need_a_secret(self) -> Settings:
        if self.signing_secrets_previous and self.signing_secret is None:
            raise ValueError("signing_secrets_previous only verify: set signing_secret too (the key that signs)")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # the URL may carry a password; everything else secret is a SecretStr already
        for name, value in super().__repr_args__():
            yield name, redis_url.redacted(value) if name == "redis_url" and value else value

    @property
    def embedded_socket(self) -> Path:
        """The unix socket of the embedded Redis (``make run``); only its owner may connect to it."""
        return self.state_dir.resolve() / "redis" / "redis.sock"

    def redis_target(self) -> str:
        """The Redis URL in use: ``JOBS_REDIS_URL``, or else the embedded Redis's socket."""
        return self.redis_url or f"unix://{self.embedded_socket}"

    def redis_settings(self) -> RedisSettings:
        plain = redis_url.redis_settings(self.redis_target())
        sentinel: dict[str, Any] = {}
        if self.redis_sentinels is not None:
            password = self.redis_sentinel_password
            sentinel = {
                "host": sentinel_addresses(self.redis_sentinels), "sentinel": True, "sentinel_master": plain.host,
                "sentinel_password": password.get_secret_value() if password else None,
            }  # fmt: skip
        return _RedisSettings(**{
            **asdict(plain),
            **sentinel,
            "cluster": self.redis_cluster,
            # no connection retries: a Redis that does not answer is reported at once (preflight.py), not after 5 s
            "conn_retries": 0,
            # arq checks the certificate but not that it names the host: any valid certificate would do
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": plain.ssl,
            "ssl_ca_certs": str(self.redis_ca_file) if self.redis_ca_file else None,
            "ssl_certfile": str(self.redis_cert_file) if self.redis_cert_file else None,
            "ssl_keyfile": str(self.redis_key_file) if self.redis_key_file else None,
        })  # fmt: skip

    def codec(self) -> Codec:
        if self.signing_secret is None:
            return Codec()
        previous = [s.get_secret_value() for s in self.signing_secrets_previous]
        return Codec(self.signing_secret.get_secret_value(), previous=previous)

    def metrics_config(self) -> MetricsConfig | None:
        """The worker's monitoring, or None when neither an endpoint nor a multiprocess directory is set."""
        if self.metrics_port is None and self.metrics_dir is None:
            return None
        return MetricsConfig(self.metrics_port, self.metrics_host, self.metrics_dir, self.metrics_queue_gauges)

    async def open_client(self) -> JobClient:
        """A connected :class:`JobClient` for these settings; close it with ``await client.close()``."""
        setup_tracing(self.tracing)
        return await JobClient.connect(
            self.redis_settings(), self.codec(), queue_name=self.queue_name, max_payload_bytes=self.max_payload_bytes
        )

    def open_sync_client(self) -> SyncJobClient:
        """A connected :class:`SyncJobClient` for these settings (sync code: Django, Flask, scripts); close it with
        ``client.close()``."""
        setup_tracing(self.tracing)
        return SyncJobClient.connect(
            self.redis_settings(), self.codec(), queue_name=self.queue_name, max_payload_bytes=self.max_payload_bytes
        )


@dataclass(repr=False)
class _RedisSettings(RedisSettings):
    """arq's settings, whose repr does not show the passwords (arq's prints every field), with the sentinels' own
    password and the cluster flag (``pools.py`` uses them)."""

    sentinel_password: str | None = None
    #: ``host``/``port`` are one node of a Redis Cluster (``cluster_pool.py``)
    cluster: bool = False

    def __repr__(self) -> str:
        hidden = {name: "***" if getattr(self, name) else None for name in ("password", "sentinel_password")}
        shown = {**self.__dict__, **hidden}
        return "RedisSettings({})".format(", ".join(f"{name}={value!r}" for name, value in shown.items()))


def sentinel_addresses(value: str) -> list[tuple[str, int]]:
    """``"h1:26379,h2:26379"`` as ``[("h1", 26379), ("h2", 26379)]``; ValueError naming a bad one."""
    addresses = []
    for item in (part.strip() for part in value.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"a sentinel address is host:port, got {item!r}")
        addresses.append((host, int(port)))
    return addresses


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once. Tests call ``get_settings.cache_clear()`` after changing the env.

    A bad value raises :class:`SettingsInvalid` naming the environment variable, one line per problem.
    """
    try:
        return Settings()
    except ValidationError as e:
        raise SettingsInvalid(describe_invalid(e)) from None


def describe_invalid(error: ValidationError) -> str:
    """``JOBS_MAX_JOBS: input should be a valid integer (got 'x')``, one line per problem; secrets not echoed."""
    lines = []
    for problem in error.errors(include_url=False):
        variable = "JOBS_" + "__".join(str(part) for part in problem["loc"]).upper()
        message = str(problem["msg"]).removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        shown = problem.get("input")
        # secrets are not echoed, nor URLs (they may carry a password; their own message shows them redacted)
        secret = any(word in variable for word in ("SECRET", "PASSWORD", "URL"))
        got = f" (got {shown!r})" if isinstance(shown, str | int | float) and not secret else ""
        lines.append(f"{variable}: {message}{got}")
    return "\n".join(lines)


# WorkerSettings needs the jobs and the cron table, and the jobs read settings at run time. It is built when
# first asked for (by arq's CLI or ``hasten worker``): a producer, the API or the CLI importing this module
# neither reads the environment nor validates the cron table, so a bad cron entry stops only the worker.
from src.runner import launch as _launch  # noqa: E402

_launch.install()  # `arq src.settings.WorkerSettings` builds our Worker (see src/runner/launch.py)


def _worker_settings() -> type:
    from src import cron as _cron
    from src import jobs as _jobs

    s = get_settings()

    class WorkerSettings:
        """Read by ``arq src.settings.WorkerSettings`` (and ``hasten worker``) to build the worker."""

        functions = _jobs.ALL
        cron_entries = _cron.TABLE
        codec = s.codec()
        redis_settings = s.redis_settings()
        queue_name = s.queue_name
        max_jobs = s.max_jobs
        job_timeout = s.job_timeout_s
        keep_result = s.keep_result_s
        poll_delay = s.poll_delay_s
        max_payload_bytes = s.max_payload_bytes
        max_result_bytes = s.max_result_bytes
        lease_s = s.lease_s
        shutdown_grace_s = s.shutdown_grace_s
        dlq_retention_s = s.dlq_retention_s
        log_level = s.log_level
        loop_lag_warn_s = s.loop_lag_warn_s
        sync_threads = s.sync_threads
        outbox_url = s.outbox_url
        job_processes = s.job_processes
        log_format = s.log_format
        tracing = s.tracing
        sentry_dsn = s.sentry_dsn
        metrics = s.metrics_config()

    return WorkerSettings


def __getattr__(name: str) -> Any:
    if name == "WorkerSettings":
        try:
            built = globals()["WorkerSettings"] = _worker_settings()
        except JobsError as e:
            if "arq.cli" not in sys.modules:
                raise
            # `arq src.settings.WorkerSettings` with a bad setting or cron entry: one line, as `hasten worker` says
            # it, instead of a traceback through arq's import machinery
            sys.stderr.write("".join(f"error: {line}\n" for line in str(e).splitlines()))
            raise SystemExit(1) from None
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
