"""The startup heap is frozen when the worker owns its process (``run()``), and left alone when it is awaited in
someone else's (``main()``): a fresh interpreter runs the blocking entry, this one the awaited one."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from collections.abc import Callable

from src.runner import JobClient
from src.runner.heap import YOUNG_THRESHOLD
from src.runner.redis_server import RedisServer
from src.runner.worker import Worker
from tests import sample_jobs
from tests.conftest import ROOT


def test_a_worker_that_owns_its_process_freezes_what_startup_built(redis_server: RedisServer) -> None:
    script = textwrap.dedent(f"""
        import asyncio, gc
        from arq.connections import RedisSettings
        from src.runner import Codec, JobClient
        from src.runner.worker import Worker
        from tests import sample_jobs

        settings = RedisSettings(host="127.0.0.1", port={redis_server.port})

        async def enqueue():
            client = await JobClient.connect(settings, Codec(), queue_name="{{heap}}")
            handle = await client.enqueue(sample_jobs.frozen_objects)
            await client.close()
            return handle.job_id

        async def result(job_id):
            client = await JobClient.connect(settings, Codec(), queue_name="{{heap}}")
            value = await client.handle(sample_jobs.frozen_objects, job_id).result(timeout_s=5)
            await client.close()
            return value

        job_id = asyncio.run(enqueue())
        before = gc.get_freeze_count()
        worker = Worker([sample_jobs.frozen_objects], redis_settings=settings, queue_name="{{heap}}", burst=True,
                        handle_signals=False, poll_delay=0.01)
        worker.run()
        print(before, asyncio.run(result(job_id)), gc.get_threshold()[0])
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    before, during_job, young_threshold = map(int, done.stdout.split())
    assert before == 0 and during_job > 10_000  # the interpreter, arq, redis-py, pydantic, the jobs …
    assert young_threshold == YOUNG_THRESHOLD  # young collections made rarer too


async def test_a_worker_awaited_in_another_process_leaves_its_heap_alone(
    client: JobClient, running_worker: Callable[..., Worker]
) -> None:
    before, threshold = gc.get_freeze_count(), gc.get_threshold()
    running_worker([sample_jobs.frozen_objects])
    handle = await client.enqueue(sample_jobs.frozen_objects)
    assert await handle.result(timeout_s=10) == before
    assert gc.get_threshold() == threshold
