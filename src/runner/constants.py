"""Every Redis key prefix and default of the runner, in one place.

arq's own keys (queue zset, ``arq:job:``, ``arq:result:`` …) come from :mod:`arq.constants` so that the
two stay identical; the keys this project adds beside them are named here.
"""

from __future__ import annotations

from arq.constants import (
    abort_jobs_ss,
    default_queue_name,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

__all__ = [
    "CRON_TICK_KEY_PREFIX",
    "DEFAULT_JOB_TIMEOUT_S",
    "DEFAULT_KEEP_RESULT_S",
    "DEFAULT_MAX_JOBS",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "EXPIRES_EXTRA_MS",
    "WIRE_VERSION",
    "abort_jobs_ss",
    "default_queue_name",
    "in_progress_key_prefix",
    "job_key_prefix",
    "result_key_prefix",
    "retry_key_prefix",
]

#: version field of the JSON envelope every payload is wrapped in
WIRE_VERSION = 1

DEFAULT_JOB_TIMEOUT_S = 300.0
DEFAULT_KEEP_RESULT_S = 3600.0
DEFAULT_MAX_JOBS = 50
DEFAULT_MAX_PAYLOAD_BYTES = 512 * 1024
#: how long after its due time an unstarted job key lives (arq's default: one day)
EXPIRES_EXTRA_MS = 86_400_000

#: ``SET NX`` marker per cron entry and tick; whoever sets it enqueues that tick
CRON_TICK_KEY_PREFIX = "jobs:cron:tick:"
#: tick markers outlive any sensible clock skew between hosts
CRON_TICK_TTL_MS = 86_400_000
