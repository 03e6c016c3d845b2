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

Errors raised in a child keep what decides their fate: ``Retry(defer=…)`` keeps arq's meaning; a
:class:`Permanent` (or subclass), invalid arguments or results stay permanent; a built-in exception (``ValueError``,
``ConnectionError`` …) is raised again as itself, so ``retry_on`` filters and stored error types read as for an
``async def`` job. Any other comes back as :class:`JobProcessError` naming its type. The child's traceback is
attached as a note.

A child is tied to the worker: it ignores SIGINT and SIGTERM (a Ctrl-C or a stop signal to the whole process
group must not cut a job short during the worker's graceful drain: the worker stops its children itself) and is
killed when the worker dies (Linux), so a runaway computation does not outlive a SIGKILLed worker. It is a fresh
interpreter (spawned), which imports the worker's main module as ``__mp_main__``: a script that starts a worker
must do so under ``if __name__ == "__main__":``.

A job's timeout counts from the moment it is claimed, so the wait for a free child, and a new child's start
(importing the job's module), are part of it.
"""

from __future__ import annotations

import asyncio
import atexit
import builtins
import contextlib
import contextvars
import functools
import importlib
import multiprocessing
import multiprocessing.util
import os
import queue
import signal
import threading
import traceback
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

import orjson
from arq.worker import Retry

from .context import JobContext
from .errors import ArgumentsInvalid, JobsError, ResultInvalid
from .fleet import tie_to_parent
from .retry import Permanent

if TYPE_CHECKING:
    from .job import JobSpec

#: what a worker runs at once in each pool unless told otherwise (``sync_threads``, ``job_processes``)
DEFAULT_SYNC_THREADS = 20
DEFAULT_JOB_PROCESSES = max(1, multiprocessing.cpu_count())

#: errors raised in a child that keep their kind in the worker (they decide "do not retry"), most specific first
_KEPT: tuple[type[Exception], ...] = (ArgumentsInvalid, ResultInvalid, Permanent)


class JobProcessError(JobsError):
    """A process job raised: ``type_name`` and the message are the child's, so is the traceback."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name


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
        self._lock = threading.Lock()
        #: one process pool per event loop (its slots are the loop's): the worker has one loop; the process-wide
        #: pools serve whichever loops call them (eager mode, a test per loop)
        self._process_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ProcessPool] = (
            weakref.WeakKeyDictionary()
        )

    async def in_thread(self, fn: Callable[..., Any], ctx: JobContext, kwargs: dict[str, Any]) -> Any:
        with self._lock:
            if self._thread_pool is None:
                self._thread_pool = DaemonThreads(self.threads)
        loop = asyncio.get_running_loop()
        # the job's context variables (its log fields, its trace) go with it, as asyncio.to_thread does
        call = functools.partial(contextvars.copy_context().run, functools.partial(fn, ctx, **kwargs))
        return await loop.run_in_executor(self._thread_pool, call)

    async def in_process(self, spec: JobSpec[Any, Any], ctx: JobContext, wire_kwargs: dict[str, Any]) -> Any:
        """The job's result in its JSON form, computed in a child."""
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._process_pools.get(loop)
            if pool is None:
                pool = self._process_pools[loop] = ProcessPool(self.processes)
        request = {
            "module": spec.fn.__module__, "name": spec.fn.__qualname__, "kwargs": wire_kwargs,
            "job_id": ctx.job_id, "job_try": ctx.job_try, "max_tries": ctx.max_tries,
            "enqueue_time": ctx.enqueue_time.isoformat(), "function": ctx.function,
        }  # fmt: skip
        reply = orjson.loads(await pool.run(orjson.dumps(request)))
        if "error" in reply:
            raise _revived(reply["error"])
        return reply["result"]

    def close(self) -> None:
        if self._thread_pool is not None:
            self._thread_pool.shutdown(wait=False)
            self._thread_pool = None
        for pool in list(self._process_pools.values()):
            pool.close()
        self._process_pools.clear()


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

    def alive(self) -> bool:
        return self.process.exitcode is None

    def kill(self) -> None:
        """SIGKILL; reaped by a thread, so the loop does not wait for the kernel to free a big child."""
        self.process.kill()
        self.conn.close()
        threading.Thread(target=self.process.join, args=(5,), name="hasten-reap", daemon=True).start()


#: every pool of this process, for :func:`_kill_children` at exit
_POOLS: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


@atexit.register  # registered after multiprocessing's own exit handler, so it runs before it
def _kill_children() -> None:
    """Children ignore SIGTERM, which is how multiprocessing stops daemonic children at exit, and its join would
    then wait for ever: kill them first."""
    for pool in list(_POOLS):
        pool.close()


class ProcessPool:
    """Up to ``size`` children, started on demand (a fresh interpreter each: no state inherited from the worker),
    kept while they are well; one request at a time each."""

    def __init__(self, size: int) -> None:
        _POOLS.add(self)
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._spawn = multiprocessing.get_context("spawn")

    async def run(self, request: bytes) -> bytes:
        async with self._slots:
            child = self._idle_child() or self._start()
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

    def _idle_child(self) -> _Child | None:
        """A kept child that is still alive (one that died while idle — the OOM killer — is dropped)."""
        while self._idle:
            child = self._idle.pop()
            if child.alive():
                return child
            child.kill()
        return None

    def _start(self) -> _Child:
        ours, theirs = self._spawn.Pipe()
        process = self._spawn.Process(
            target=child_main, args=(theirs, os.getpid()), name="hasten-job-process", daemon=True
        )
        try:
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
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


def child_main(conn: Connection, parent_pid: int) -> None:
    """A child's loop: a request in, a reply out, until the worker closes the pipe (or dies: then so does this)."""
    tie_to_parent(parent_pid, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            request = orjson.loads(conn.recv_bytes())
        except EOFError:
            return
        reply = _serve(request)
        try:
            encoded = orjson.dumps(reply)
        except TypeError as e:  # a result JSON cannot carry (an integer past 64 bits …): the job's fault, for good
            encoded = orjson.dumps({"error": _described(ResultInvalid(f"{request['name']}() returned {e}"))})
        conn.send_bytes(encoded)


def _serve(request: dict[str, Any]) -> dict[str, Any]:
    try:
        spec = _spec(request["module"], request["name"])
        ctx = JobContext(
            job_id=request["job_id"], job_try=request["job_try"], max_tries=request["max_tries"],
            enqueue_time=datetime.fromisoformat(request["enqueue_time"]), function=request["function"],
        )  # fmt: skip
        values = dict(spec.validate_args((), request["kwargs"]))
        return {"result": spec.encode_result(spec.fn(ctx, **values))}
    except Exception as e:
        return {"error": _described(e)}


def _spec(module_name: str, name: str) -> JobSpec[Any, Any]:
    """The ``@job`` whose function is ``module.name`` (under that name, or another: ``heavy = job(...)(_impl)``)."""
    from .job import JobSpec

    module = importlib.import_module(module_name)
    found = getattr(module, name, None)
    if isinstance(found, JobSpec):
        return found
    for value in vars(module).values():
        if isinstance(value, JobSpec) and value.fn is found:
            return value
    raise Permanent(f"{module_name}.{name} is not a @job in a fresh interpreter")


def _described(e: Exception) -> dict[str, Any]:
    """What the worker needs to raise ``e`` again with the same fate (see the module docstring)."""
    text = message = ""
    with contextlib.suppress(Exception):  # an error that cannot be rendered still leaves its type
        message = str(e)
        text = "".join(traceback.format_exception(e))
    kept = next((kind.__name__ for kind in _KEPT if isinstance(e, kind)), None)
    described: dict[str, Any] = {"type": type(e).__name__, "message": message, "traceback": text, "kept": kept}
    if isinstance(e, Retry):
        described["retry_ms"] = e.defer_score
    return described


def _revived(error: dict[str, Any]) -> Exception:
    """The exception a child described, as the worker raises it."""
    revived: Exception
    kept = {kind.__name__: kind for kind in _KEPT}.get(error.get("kept") or "")
    builtin = getattr(builtins, error["type"], None)
    if "retry_ms" in error:
        revived = Retry(defer=(error["retry_ms"] or 0) / 1000)
    elif kept is not None:
        revived = kept(error["message"])
    elif isinstance(builtin, type) and issubclass(builtin, Exception):
        try:
            revived = builtin(error["message"])
        except Exception:  # a built-in that wants other arguments
            revived = JobProcessError(error["type"], error["message"])
    else:
        revived = JobProcessError(error["type"], error["message"])
    if error.get("traceback"):
        revived.add_note("in the job's process:\n" + error["traceback"].rstrip())
    return revived
