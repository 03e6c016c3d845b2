"""Where job bodies that are not coroutines run: sync jobs in the worker's own thread pool, CPU-bound jobs
(``@job(process=True)``) in its own process pool. Neither runs on the event loop, so neither delays pickup,
leases, heartbeats or the other jobs.

- Threads: a bounded pool that belongs to the worker (not the loop's default executor, which everything else in
  the process shares). A thread cannot be stopped from outside: when a sync job times out or is aborted, its try
  ends at once (the outcome is recorded, the worker slot freed), while the thread runs the function to its end
  and its return value is dropped; until then it holds one of the pool's threads. The threads are daemons: one
  still stuck in a job does not hold the worker's exit (the standard pool joins its threads at exit), and its
  job, like any job cut short by a stop, is run again (at least once).
- Processes: each child runs one job at a time. The request and the reply are JSON (the job's arguments in their
  wire form, its result as ``encode_result`` gives it): the child imports the job's module, finds the ``@job`` by
  name and validates the arguments again, as the worker would. A job that times out or is aborted has its child
  killed (SIGKILL) and replaced, so a runaway computation stops. A child that dies (a crash, the OOM killer)
  fails the try with :class:`JobProcessDied`, which is retried like any error.

Errors raised in a child come back as :class:`JobProcessError` naming the original type and message, with the
child's traceback; our own permanent errors (invalid arguments or results, :class:`Permanent`) keep their type,
so they are not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import multiprocessing
import queue
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

import orjson

from .context import JobContext
from .errors import ArgumentsInvalid, JobsError, ResultInvalid
from .retry import Permanent

if TYPE_CHECKING:
    from .job import JobSpec

#: what a worker runs at once in each pool unless told otherwise (``sync_threads``, ``job_processes``)
DEFAULT_SYNC_THREADS = 20
DEFAULT_JOB_PROCESSES = max(1, multiprocessing.cpu_count())

#: errors raised in a child that keep their type in the worker (they decide "do not retry")
_KEPT: dict[str, type[Exception]] = {e.__name__: e for e in (ArgumentsInvalid, ResultInvalid, Permanent)}


class JobProcessError(JobsError):
    """A process job raised: ``type_name`` and the message are the child's, so is the traceback."""

    def __init__(self, type_name: str, message: str, child_traceback: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.child_traceback = child_traceback


class JobProcessDied(JobsError):
    """The child process running a job ended without replying (killed, crashed, out of memory)."""


class Offload:
    """The worker's pools, each made on first use and closed with the worker."""

    def __init__(self, threads: int = DEFAULT_SYNC_THREADS, processes: int = DEFAULT_JOB_PROCESSES) -> None:
        if threads < 1 or processes < 1:
            raise ValueError("sync_threads and job_processes must be at least 1")
        self.threads = threads
        self.processes = processes
        self._thread_pool: DaemonThreads | None = None
        self._process_pool: ProcessPool | None = None

    async def in_thread(self, fn: Callable[..., Any], ctx: JobContext, kwargs: dict[str, Any]) -> Any:
        if self._thread_pool is None:
            self._thread_pool = DaemonThreads(self.threads)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread_pool, lambda: fn(ctx, **kwargs))

    async def in_process(self, spec: JobSpec[Any, Any], ctx: JobContext, wire_kwargs: dict[str, Any]) -> Any:
        """The job's result in its JSON form, computed in a child."""
        if self._process_pool is None:
            self._process_pool = ProcessPool(self.processes)
        request = {
            "module": spec.fn.__module__, "name": spec.fn.__qualname__, "kwargs": wire_kwargs,
            "job_id": ctx.job_id, "job_try": ctx.job_try, "max_tries": ctx.max_tries,
            "enqueue_time": ctx.enqueue_time.isoformat(), "function": ctx.function,
        }  # fmt: skip
        reply = orjson.loads(await self._process_pool.run(orjson.dumps(request)))
        if "error" in reply:
            error = reply["error"]
            kept = _KEPT.get(error["type"])
            if kept is not None:
                raise kept(error["message"])
            raise JobProcessError(error["type"], error["message"], error["traceback"])
        return reply["result"]

    def close(self) -> None:
        if self._thread_pool is not None:
            self._thread_pool.shutdown(wait=False)
            self._thread_pool = None
        if self._process_pool is not None:
            self._process_pool.close()
            self._process_pool = None


class DaemonThreads(Executor):
    """``size`` daemon threads (started with the pool: the pool itself is made on the first sync job), taking
    calls in order."""

    def __init__(self, size: int) -> None:
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"hasten-sync-{i}", daemon=True) for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._work.put((future, lambda: fn(*args, **kwargs)))
        return future

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            future, call = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as e:  # the job's error, for the awaiting try
                    future.set_exception(e)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Threads leave once the calls queued before this are done; a call stuck in a job is not waited for
        unless ``wait``."""
        for _ in self._threads:
            self._work.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


#: the process-wide pools of ``@job`` functions run outside our worker (stock arq's, eager mode)
shared = Offload()


class _Child:
    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class ProcessPool:
    """Up to ``size`` children, started on demand (a fresh interpreter each: no state inherited from the worker),
    kept while they are well; one request at a time each."""

    def __init__(self, size: int) -> None:
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._spawn = multiprocessing.get_context("spawn")

    async def run(self, request: bytes) -> bytes:
        async with self._slots:
            child = self._idle.pop() if self._idle else self._start()
            self._busy.add(child)
            try:
                child.conn.send_bytes(request)
                reply = await _receive(child)
            except BaseException:
                # cancelled (a timeout, an abort, the worker stopping) or the child is gone: it may be mid-way
                # through a computation nobody will read, so it goes
                self._busy.discard(child)
                child.kill()
                raise
            self._busy.discard(child)
            self._idle.append(child)
            return reply

    def _start(self) -> _Child:
        ours, theirs = self._spawn.Pipe()
        process = self._spawn.Process(target=child_main, args=(theirs,), name="hasten-job-process", daemon=True)
        process.start()
        theirs.close()
        return _Child(process, ours)

    def close(self) -> None:
        for child in [*self._idle, *self._busy]:
            child.kill()
        self._idle.clear()
        self._busy.clear()


async def _receive(child: _Child) -> bytes:
    """The child's reply, read when its pipe is readable; :class:`JobProcessDied` if it ends first."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = child.conn.fileno()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    try:
        return child.conn.recv_bytes()  # written whole by the child: a readable pipe holds the start of it
    except (EOFError, OSError):
        child.process.join(timeout=5)
        raise JobProcessDied(f"the job's process ended without a result (exit code {child.process.exitcode})") from None


def child_main(conn: Connection) -> None:
    """A child's loop: a request in, a reply out, until the worker closes the pipe."""
    while True:
        try:
            request = orjson.loads(conn.recv_bytes())
        except EOFError:
            return
        conn.send_bytes(orjson.dumps(_serve(request)))


def _serve(request: dict[str, Any]) -> dict[str, Any]:
    from .job import JobSpec

    try:
        spec = getattr(importlib.import_module(request["module"]), request["name"])
        if not isinstance(spec, JobSpec):
            raise TypeError(f"{request['module']}.{request['name']} is not a @job")
        ctx = JobContext(
            job_id=request["job_id"], job_try=request["job_try"], max_tries=request["max_tries"],
            enqueue_time=datetime.fromisoformat(request["enqueue_time"]), function=request["function"],
        )  # fmt: skip
        values = dict(spec.validate_args((), request["kwargs"]))
        return {"result": spec.encode_result(spec.fn(ctx, **values))}
    except Exception as e:
        text = ""
        with contextlib.suppress(Exception):  # a traceback that cannot be rendered still leaves the error
            text = "".join(traceback.format_exception(e))
        return {"error": {"type": type(e).__name__, "message": str(e), "traceback": text}}
