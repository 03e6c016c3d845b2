"""Eager mode for users' unit tests: ``enqueue`` runs the job inline, through the same path as the worker.

Arguments are validated and encoded exactly as for Redis (size limit and signature included), decoded again
as a worker would, run with the job's timeout and retry policy (without the waits between tries), and the
outcome is stored in memory in arq's result format, so ``handle.result()`` / ``status()`` / ``info()``
behave as they do against a real worker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ParamSpec, TypeVar

from arq.connections import ArqRedis
from arq.jobs import JobResult, JobStatus, deserialize_result
from arq.utils import ms_to_datetime
from arq.worker import Retry

from . import constants as k
from .canvas import Flow
from .client import JobClient, require_spec
from .codec import Codec
from .context import CTX_DEFAULT_TIMEOUT_S, STATE_KEY
from .errors import JobNotFound
from .handle import JobHandle, JobInfo
from .job import JobCall, JobSpec
from .redact import mask_arguments
from .workflow import WorkflowHandle

P = ParamSpec("P")
R = TypeVar("R")


class EagerClient(JobClient):
    """A :class:`JobClient` that runs each job inline at enqueue; ``redis`` and ``state`` (optional) are given to
    jobs (``ctx.redis``, ``ctx.state(...)``)."""

    def __init__(
        self,
        codec: Codec | None = None,
        *,
        redis: ArqRedis | None = None,
        max_payload_bytes: int = k.DEFAULT_MAX_PAYLOAD_BYTES,
        job_timeout_s: float = k.DEFAULT_JOB_TIMEOUT_S,
        state: Any = None,
    ) -> None:
        # no Redis connection of its own: nothing is queued
        self.codec = codec or Codec()
        self.queue_name = k.default_queue_name
        self.max_payload_bytes = max_payload_bytes
        self._jobs_redis = redis
        self._job_timeout_s = job_timeout_s
        #: what jobs get as ``ctx.state(...)``, as a worker's on_startup would give them
        self._state = state
        self._results: dict[str, bytes] = {}

    async def close(self) -> None:
        self._results.clear()

    async def enqueue(self, spec: JobSpec[P, R], /, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        require_spec(spec)
        return await self._submit(spec.call(*args, **kwargs))

    async def enqueue_many(self, calls: Sequence[JobCall[R]]) -> list[JobHandle[R]]:
        return [await self._submit(call) for call in calls]

    async def enqueue_workflow(self, flow: Flow[R], /, **options: Any) -> WorkflowHandle[R]:
        """Refused: a workflow is advanced by the finish script in Redis, which eager mode has none of."""
        raise TypeError(
            "EagerClient does not run workflows (their steps are advanced in Redis): test a workflow against a "
            "redis-server and a worker, or its jobs one by one with enqueue()"
        )

    async def _submit(self, call: JobCall[R]) -> JobHandle[R]:
        job = self._prepare(call.spec, call.kwargs)
        if job.job_id in self._results:
            return JobHandle(self, call.spec, job.job_id, enqueued=False)
        self._results[job.job_id] = await self._run(call.spec, job.job_id, job.queue, job.payload)
        return JobHandle(self, call.spec, job.job_id)

    async def _run(self, spec: JobSpec[Any, Any], job_id: str, queue: str, payload: bytes) -> bytes:
        # decoded as a worker would: the same codec, signature (for this id and queue) and all
        data = self.codec.loads(payload, job_id=job_id, queue=queue)
        arq_ctx: dict[Any, Any] = {"job_id": job_id, "enqueue_time": ms_to_datetime(data["et"]), "redis": None}
        if self._jobs_redis is not None:
            arq_ctx["redis"] = self._jobs_redis
        arq_ctx[CTX_DEFAULT_TIMEOUT_S] = self._job_timeout_s
        arq_ctx[STATE_KEY] = self._state
        start_ms = int(time.time() * 1000)
        job_try = 0
        while True:
            job_try += 1
            arq_ctx["job_try"] = job_try
            try:
                result, success = await spec._arq_entry(arq_ctx, *data["a"], **data["k"]), True
            except Retry:
                if job_try < spec.retry.max_tries:
                    continue
                result, success = Exception(f"max {spec.retry.max_tries} retries exceeded"), False
            except Exception as e:
                result, success = e, False
            break
        record = {
            "t": job_try, "f": spec.name, "a": data["a"], "k": mask_arguments(data["k"], spec.redact), "et": data["et"],
            "s": success, "r": result, "st": start_ms, "ft": int(time.time() * 1000), "q": self.queue_name,
            "id": job_id,
        }  # fmt: skip
        return self.codec.dumps(record)

    def _outcome(self, job_id: str) -> JobResult:
        try:
            return deserialize_result(self._results[job_id], deserializer=self.codec.loads)
        except KeyError:
            raise JobNotFound(f"job {job_id} not found") from None

    async def abort(self, job_id: str, timeout_s: float = 5.0, queue_name: str | None = None) -> bool:
        return False  # an eager job has finished by the time anyone holds its handle

    async def status(self, job_id: str, queue_name: str | None = None) -> JobStatus:
        return JobStatus.complete if job_id in self._results else JobStatus.not_found

    async def wait_result(self, job_id: str, timeout_s: float | None, queue_name: str | None = None) -> JobResult:
        return self._outcome(job_id)

    async def info(self, job_id: str, queue_name: str | None = None) -> JobInfo:
        return JobInfo.from_result(job_id, JobStatus.complete, self._outcome(job_id))
