"""Exceptions raised by the runner.

::

    JobsError
     ├── PayloadError            a payload cannot be encoded, decoded or trusted
     │    ├── PayloadTooLarge    refused at enqueue: over ``max_payload_bytes``
     │    └── SignatureError     unsigned, altered, malformed or copied (other id/queue) signed payload
     ├── ArgumentsInvalid        arguments fail the job's signature (at enqueue or in the worker)
     ├── ResultInvalid           a job returned something its return annotation does not allow
     ├── UnknownJob              no job of that name is registered
     ├── CronEntryError          a cron entry is invalid (bad crontab, zone, job or arguments)
     ├── JobFailed               the job ended in an exception (re-raised by ``JobHandle.result``)
     ├── JobTimeout              the job ran past its ``timeout_s``
 ├── JobAborted              the job was aborted (``JobHandle.abort``) before it finished
 ├── JobCancelled            the job raised ``CancelledError`` itself (a failed try, retried like any error)
     ├── WorkflowFailed          a workflow's step failed for good (re-raised by ``WorkflowHandle.result``)
     ├── RequeueRefused          a dead job that cannot be requeued alone (a step of a failed workflow)
     ├── JobNotFound             no job, and no result, with that id
     ├── ResultNotReady          ``JobHandle.result`` gave up waiting
     ├── RedisUnreachable        cannot connect to Redis (the message names the URL, password hidden)
     ├── KeyLayoutError          Redis holds a key layout this worker does not know, or a queue cannot live there
     └── SettingsInvalid         a ``JOBS_`` environment variable (or ``.env`` line) has a bad value
"""

from __future__ import annotations


class JobsError(Exception):
    """Base class of every error this project raises."""


class PayloadError(JobsError):
    """A payload cannot be encoded, decoded or trusted."""


class PayloadTooLarge(PayloadError):
    """An encoded job is larger than ``max_payload_bytes``."""


class SignatureError(PayloadError):
    """While a signing secret is set: a payload is unsigned, its signature is malformed or does not match, or it
    was signed for another job id or queue."""


class ArgumentsInvalid(JobsError):
    """Arguments do not fit the job's signature; never retried."""


class ResultInvalid(JobsError):
    """A job's return value does not fit its return annotation; never retried."""


class UnknownJob(JobsError):
    """No job of that name is registered."""


class CronEntryError(JobsError):
    """A cron entry is invalid; the message names the entry."""


class JobTimeout(JobsError):
    """The job ran longer than its ``timeout_s``."""


class JobAborted(JobsError):
    """The job was aborted before it finished (re-raised by ``JobHandle.result``).

    arq stores an aborted job's result as ``CancelledError``; a caller must not see that, because a
    ``TaskGroup``, retry helpers and middleware take a ``CancelledError`` for their own cancellation.
    """


class JobCancelled(JobsError):
    """A job raised ``asyncio.CancelledError`` although the worker did not cancel it (a library turning its own
    timeout into one, a cancelled future): a failed try like any exception, retried by the job's policy."""


class WorkflowFailed(JobsError):
    """A step of a workflow failed for good (or was aborted), which failed the workflow; the message names the step
    (its index, function and job id) and its error."""

    def __init__(self, workflow_id: str, message: str) -> None:
        super().__init__(f"workflow {workflow_id}: {message}")
        self.workflow_id = workflow_id


class RequeueRefused(JobsError):
    """A dead job cannot be put back on its own: it is a step of a workflow, which failed when the step died."""


class JobNotFound(JobsError):
    """No job and no result with that id (never enqueued, expired, or its result was not kept)."""


class ResultNotReady(JobsError, TimeoutError):
    """No result arrived within the time ``JobHandle.result`` was given."""


class JobFailed(JobsError):
    """A job ended in an exception; ``type`` names it, ``message`` is its text.

    Exceptions cross Redis as JSON (type name and message), never as pickled objects, so the client
    re-raises this instead of the original class.
    """

    def __init__(self, type: str, message: str) -> None:
        super().__init__(f"{type}: {message}" if message else type)
        self.type = type
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobFailed) and (self.type, self.message) == (other.type, other.message)

    def __hash__(self) -> int:
        return hash((self.type, self.message))


class RedisUnreachable(JobsError, ConnectionError):
    """No connection to Redis; the message names the URL (password hidden), the variable and the cause."""


class KeyLayoutError(JobsError):
    """The worker refuses to start: Redis holds keys in a layout it does not know (a newer version wrote them), the
    server is too old for the scripts, or a queue has no hash tag on a Redis Cluster."""


class SettingsInvalid(JobsError, ValueError):
    """A setting has a bad value; the message names the environment variable, one line per problem."""
