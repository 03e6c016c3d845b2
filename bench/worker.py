"""Start one benchmark worker: ``python -m bench.worker <variant> <redis port> [max_jobs]``.

Variants: ``ours`` (our worker, default settings), ``ours+metrics`` (the same with metrics on), ``arq`` (stock
arq 0.28, defaults: asyncio loop, pickle, poll 0.5 s, max_jobs 10), ``arq-tuned`` (stock arq, uvloop,
``max_jobs=100, poll_delay=0.01``).
Logging is configured as arq's CLI does, so per-job log lines cost what they cost there.
"""

from __future__ import annotations

import asyncio
import logging.config
import os
import sys

import uvloop
from arq.connections import RedisSettings
from arq.logs import default_log_config
from arq.worker import Worker as ArqWorker
from arq.worker import func

from bench.jobs import ARQ, OURS
from src.runner.launch import create_worker
from src.runner.logs import log_config
from src.runner.metrics_config import MetricsConfig


def main() -> None:
    variant, port = sys.argv[1], int(sys.argv[2])
    max_jobs = int(sys.argv[3]) if len(sys.argv) > 3 else None
    logging.config.dictConfig(default_log_config(verbose=False))
    if os.environ.get("BENCH_DEBUG_LOG"):
        # what per-job log lines cost: our worker logs each job start and end at DEBUG
        logging.config.dictConfig(log_config("DEBUG"))
    redis_settings = RedisSettings(port=port)
    if variant in ("ours", "ours+metrics"):
        if os.environ.get("BENCH_TELEMETRY"):  # traces, JSON logs, Sentry (bench/telemetry.py)
            from bench import telemetry

            telemetry.worker(os.environ.get("BENCH_TELEMETRY_PARTS", "metrics,traces,logs,sentry"))
        settings: dict[str, object] = {"functions": OURS, "redis_settings": redis_settings}
        if variant == "ours+metrics":  # every job metered, the endpoint up on a free port (not scraped)
            settings["metrics"] = MetricsConfig(port=0)
        if max_jobs:
            settings["max_jobs"] = max_jobs
        if lease_s := os.environ.get("JOBS_LEASE_S"):  # the kill soak: a killed worker's jobs come back sooner
            settings["lease_s"] = float(lease_s)
        create_worker(settings).run()
        return
    # the kill soak shortens stock arq's job timeout, or a killed worker's jobs would wait its in-progress
    # expiry (timeout + 10 s, by default 310 s) before they run again
    timeout_s = float(os.environ.get("BENCH_ARQ_JOB_TIMEOUT_S", "300"))
    functions = [func(f, name=name, timeout=timeout_s) for name, f in ARQ.items()]
    if variant == "arq-tuned":
        asyncio.set_event_loop(uvloop.new_event_loop())
        ArqWorker(functions, redis_settings=redis_settings, max_jobs=max_jobs or 100, poll_delay=0.01).run()
    else:
        asyncio.set_event_loop(asyncio.new_event_loop())
        ArqWorker(functions, redis_settings=redis_settings, max_jobs=max_jobs or 10).run()


if __name__ == "__main__":
    main()
