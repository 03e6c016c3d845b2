"""The job runner: typed jobs over arq, a JSON wire format, a client, a worker and a cron table."""

from __future__ import annotations

from arq.jobs import JobStatus

from .canvas import Chain, Group, Signature, chain, chord, group
from .client import JobClient
from .codec import Codec
from .context import JobContext
from .cron import CronEntry, cron
from .cron_state import CronState, cron_states
from .dlq import DeadJob, DeadLetters
from .eager import EagerClient
from .errors import (
    ArgumentsInvalid,
    CronEntryError,
    JobAborted,
    JobFailed,
    JobNotFound,
    JobsError,
    JobTimeout,
    PayloadError,
    PayloadTooLarge,
    RedisUnreachable,
    RequeueRefused,
    ResultInvalid,
    ResultNotReady,
    SettingsInvalid,
    SignatureError,
    UnknownJob,
    WorkflowFailed,
)
from .failures import JobFailure
from .handle import JobHandle, JobInfo
from .job import EnqueueOptions, JobSpec, job
from .offload import JobProcessDied, JobProcessError
from .retry import NO_RETRY, Backoff, Permanent, Retry
from .sync_client import SyncJobClient, SyncJobHandle, SyncWorkflowHandle
from .workflow import StepInfo, WorkflowHandle, WorkflowInfo

__all__ = [
    "NO_RETRY",
    "ArgumentsInvalid",
    "Backoff",
    "Chain",
    "Codec",
    "CronEntry",
    "CronEntryError",
    "CronState",
    "DeadJob",
    "DeadLetters",
    "EagerClient",
    "EnqueueOptions",
    "Group",
    "JobAborted",
    "JobClient",
    "JobContext",
    "JobFailed",
    "JobFailure",
    "JobHandle",
    "JobInfo",
    "JobNotFound",
    "JobProcessDied",
    "JobProcessError",
    "JobSpec",
    "JobStatus",
    "JobTimeout",
    "JobsError",
    "PayloadError",
    "PayloadTooLarge",
    "Permanent",
    "RedisUnreachable",
    "RequeueRefused",
    "ResultInvalid",
    "ResultNotReady",
    "Retry",
    "SettingsInvalid",
    "Signature",
    "SignatureError",
    "StepInfo",
    "SyncJobClient",
    "SyncJobHandle",
    "SyncWorkflowHandle",
    "UnknownJob",
    "WorkflowFailed",
    "WorkflowHandle",
    "WorkflowInfo",
    "chain",
    "chord",
    "cron",
    "cron_states",
    "group",
    "job",
]
