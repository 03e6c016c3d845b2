"""The client for sync code — Django or Flask views, scripts, management commands — with :class:`JobClient`'s typed
API and no ``await``.

Each :class:`SyncJobClient` runs one event loop in a daemon thread of its own; a call is handed to that loop and
waited for in the caller's thread. So a call costs a hand-off between threads, not a new event loop and a new
connection each time, and the connection pool lives as long as the client. Any number of threads may share one
client (a web server's worker threads): the loop serialises nothing but its own work, and the pool hands each
call its own connection. Make one per process, at start-up, and close it at exit (or use it as a context manager).

A call made from the client's own loop (a job that reaches for the sync client) would wait for itself: it raises.
Async code uses :class:`JobClient` instead.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, ParamSpec, TypeVar

import uvloop
from arq.connections import RedisSettings
from arq.jobs import JobStatus

from .canvas import Flow
from .client import JobClient
from .codec import Codec
from .constants import DEFAULT_MAX_PAYLOAD_BYTES, default_queue_name
from .handle import JobHandle, JobInfo
from .job import JobCall, JobSpec
from .workflow import OnFailure, WorkflowHandle, WorkflowInfo

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class SyncJobClient:
    """Enqueue jobs and read their state from sync code; see the module docstring. Build with :meth:`connect`."""

    def __init__(self, client: JobClient, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self._client = client
        self._loop = loop
        self._thread = thread

    @classmethod
    def connect(
        cls, redis_settings: RedisSettings | None = None, codec: Codec | None = None, *,
        queue_name: str = default_queue_name, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> SyncJobClient:  # fmt: skip
        """Start the client's loop thread and connect (:meth:`JobClient.connect`'s arguments)."""
        loop = uvloop.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="hasten-sync-client", daemon=True)
        thread.start()
        connecting = JobClient.connect(
            redis_settings or RedisSettings(), codec or Codec(), queue_name=queue_name,
            max_payload_bytes=max_payload_bytes,
        )  # fmt: skip
        try:
            client = asyncio.run_coroutine_threadsafe(connecting, loop).result()
        except BaseException:
            _stop(loop, thread)
            raise
        return cls(client, loop, thread)

    @property
    def queue_name(self) -> str:
        return self._client.queue_name

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` (one of the async client's calls) on the client's loop and return what it returns."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("the sync client was called from its own event loop: use the async JobClient there")
        if self._loop.is_closed():
            coroutine.close()
            raise RuntimeError("the sync client is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def enqueue(self, spec: JobSpec[P, R], /, *args: P.args, **kwargs: P.kwargs) -> SyncJobHandle[R]:
        """Validate and enqueue one job (:meth:`JobClient.enqueue`)."""
        return SyncJobHandle(self, self.call(self._client.enqueue(spec, *args, **kwargs)))

    def enqueue_many(self, calls: Sequence[JobCall[R]]) -> list[SyncJobHandle[R]]:
        """Enqueue validated calls (``spec.call(...)``) in one round trip per queue (:meth:`JobClient.enqueue_many`)."""
        return [SyncJobHandle(self, handle) for handle in self.call(self._client.enqueue_many(calls))]

    def enqueue_workflow(
        self, flow: Flow[R], /, *, queue_name: str | None = None, on_failure: OnFailure = "cancel",
        keep_result_s: float | None = None,
    ) -> SyncWorkflowHandle[R]:  # fmt: skip
        """Validate every step of ``flow`` and write it in one round trip (:meth:`JobClient.enqueue_workflow`)."""
        enqueueing = self._client.enqueue_workflow(
            flow, queue_name=queue_name, on_failure=on_failure, keep_result_s=keep_result_s
        )
        return SyncWorkflowHandle(self, self.call(enqueueing))

    def handle(self, spec: JobSpec[Any, R], job_id: str, queue_name: str | None = None) -> SyncJobHandle[R]:
        """A handle for a job enqueued elsewhere (by id)."""
        return SyncJobHandle(self, self._client.handle(spec, job_id, queue_name))

    def close(self) -> None:
        """Close the connections and stop the loop thread (idempotent)."""
        if self._loop.is_closed():
            return
        try:
            self.call(self._client.close())
        finally:
            _stop(self._loop, self._thread)

    def __enter__(self) -> SyncJobClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncJobHandle(Generic[R]):
    """:class:`JobHandle` for sync code: the same calls, each waited for in the caller's thread."""

    def __init__(self, client: SyncJobClient, handle: JobHandle[R]) -> None:
        self._client = client
        self.handle = handle

    def __repr__(self) -> str:
        return f"<SyncJobHandle {self.handle.spec.name} {self.job_id}>"

    @property
    def job_id(self) -> str:
        return self.handle.job_id

    @property
    def enqueued(self) -> bool:
        """False when a job or result with this id already existed, so nothing new was written."""
        return self.handle.enqueued

    def status(self) -> JobStatus:
        return self._client.call(self.handle.status())

    def info(self) -> JobInfo:
        return self._client.call(self.handle.info())

    def abort(self, timeout_s: float = 5.0) -> bool:
        """Cancel the job, queued or running; True once it ended as aborted."""
        return self._client.call(self.handle.abort(timeout_s))

    def result(self, timeout_s: float | None = None) -> R:
        """Wait for the job's result, blocking this thread (:meth:`JobHandle.result`: ``JobFailed``, ``JobAborted``,
        ``ResultNotReady`` on timeout)."""
        return self._client.call(self.handle.result(timeout_s))


class SyncWorkflowHandle(Generic[R]):
    """:class:`WorkflowHandle` for sync code: the same calls, each waited for in the caller's thread."""

    def __init__(self, client: SyncJobClient, handle: WorkflowHandle[R]) -> None:
        self._client = client
        self.handle = handle

    def __repr__(self) -> str:
        return f"<SyncWorkflowHandle {self.workflow_id}>"

    @property
    def workflow_id(self) -> str:
        return self.handle.workflow_id

    def status(self) -> str:
        """running, complete or failed."""
        return self._client.call(self.handle.status())

    def info(self) -> WorkflowInfo:
        return self._client.call(self.handle.info())

    def result(self, timeout_s: float | None = None) -> R:
        """Wait for the workflow's result, blocking this thread (:meth:`WorkflowHandle.result`: ``WorkflowFailed``
        naming the step, ``ResultNotReady`` on timeout)."""
        return self._client.call(self.handle.result(timeout_s))


class OnePerProcess:
    """The client a process's threads share (a Django or Flask app's views): opened by ``opener`` on first use,
    closed at exit. ``jobs = OnePerProcess(lambda: get_settings().open_sync_client())``, then
    ``jobs().enqueue(...)``."""

    def __init__(self, opener: Callable[[], SyncJobClient]) -> None:
        self._opener = opener
        self._client: SyncJobClient | None = None
        self._lock = threading.Lock()
        atexit.register(self.close)

    def __call__(self) -> SyncJobClient:
        with self._lock:
            if self._client is None:
                self._client = self._opener()
            return self._client

    def close(self) -> None:
        """Close the client; the next call opens a new one."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()
