"""The benchmark (not a test): our worker against stock arq 0.28, interleaved, on one local redis-server.

``make bench`` runs it and writes ``bench/RESULTS.md``. Every workload runs ``BENCH_RUNS`` times (default 3)
per variant, variants interleaved; the tables show the median, min–max, and ratios measured in the same run.
Workers are separate processes (``bench/worker.py``); clients run here, on uvloop, for every variant.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import serialize_job

from bench import jobs
from src.cli import stop_processes
from src.runner import Codec, JobClient, chain, tracing
from src.runner.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
DRAIN_N = 10_000
WAITERS_N = 1_000
#: the observability workload's variants (``BENCH_TELEMETRY_VARIANTS`` to run some)
TELEMETRY_VARIANTS = os.environ.get("BENCH_TELEMETRY_VARIANTS", "ours,ours+telemetry,ours+telemetry+all-traced").split(
    ","
)
#: the share of traces the observability workload samples (its ``+all-traced`` variant: all)
TRACES_SAMPLED = 0.01
SLEEP_N = 2_000
PICKUP_N = 200
BACKLOG_N = int(os.environ.get("BENCH_BACKLOG", "1000000"))
BACKLOG_WINDOW = 20_000
CPU_N = 5_000
REMOTE_N = 2_000
REMOTE_PICKUP_N = 50
#: the workflow workload: chains of three steps drained, and chains run one at a time
CHAINS_N = 1000
CHAIN_ROUNDS = 30
VARIANTS = ["ours", "arq-tuned", "arq"]
#: run only these workloads (comma-separated method names, e.g. ``BENCH_ONLY=enqueue,sleep_load``)
ONLY = {name for name in os.environ.get("BENCH_ONLY", "").split(",") if name}
LABELS = {"ours": "ours (defaults)", "arq-tuned": "arq tuned", "arq": "arq defaults"}


@dataclass
class Results:
    """metric -> variant -> list of samples"""

    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, metric: str, variant: str, value: float) -> None:
        self.samples.setdefault(metric, {}).setdefault(variant, []).append(value)
        print(f"  {metric:<28} {variant:<14} {value:,.3f}", flush=True)

    def median(self, metric: str, variant: str) -> float | None:
        values = self.samples.get(metric, {}).get(variant)
        return statistics.median(values) if values else None


class Bench:
    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.settings = RedisSettings(port=server.port)
        self.results = Results()
        self.log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))

    async def __aenter__(self) -> Bench:
        self.redis: ArqRedis = await create_pool(self.settings)  # arq's own client: pickle
        self.ours = await JobClient.connect(self.settings, Codec())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.redis.aclose()
        await self.ours.close()

    # workers --------------------------------------------------------------------------------------------
    def start(
        self, variant: str, expected: int, *, max_jobs: int | None = None, debug_log: bool = False, count: int = 1,
        telemetry: bool = False, port: int | None = None, env: dict[str, str] | None = None,
    ) -> list[subprocess.Popen[bytes]]:  # fmt: skip
        env = {**os.environ, **(env or {}), "BENCH_N": str(expected), "BENCH_DEBUG_LOG": "1" if debug_log else ""}
        env["BENCH_REDIS_PORT"] = str(port or self.server.port)  # the I/O body's own client
        env["BENCH_TELEMETRY"] = "1" if telemetry else ""
        args = [sys.executable, "-m", "bench.worker", variant, str(port or self.server.port)]
        if max_jobs:
            args.append(str(max_jobs))
        with (self.log_dir / f"{variant}.log").open("ab") as log:
            return [subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=log) for _ in range(count)]

    @staticmethod
    def stop(procs: list[subprocess.Popen[bytes]]) -> None:
        stop_processes(procs, timeout_s=20)

    @staticmethod
    def peak_rss_mib(proc: subprocess.Popen[bytes]) -> float:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    # enqueue helpers ------------------------------------------------------------------------------------
    async def fill(self, variant: str, name: str, n: int) -> None:
        """Pre-enqueue n argument-less jobs the way each variant's client would, as fast as it can."""
        if variant.startswith("ours"):
            spec = {"noop": jobs.noop, "io": jobs.io, "sleepy": jobs.sleepy, "tracked": jobs.tracked,
                    "capped": jobs.capped, "paced": jobs.paced}[name]  # fmt: skip
            for i in range(0, n, 1000):
                await self.ours.enqueue_many([spec.call() for _ in range(min(1000, n - i))])
            return
        # arq's enqueue_job WATCHes every key; writing its exact format in a pipeline is the same data, faster
        now_ms = int(time.time() * 1000)
        for i in range(0, n, 1000):
            async with self.redis.pipeline(transaction=False) as pipe:
                for j in range(i, min(i + 1000, n)):
                    job_id = f"{name}-{j}"
                    pipe.psetex(job_key_prefix + job_id, 86_400_000, serialize_job(name, (), {}, None, now_ms))
                    pipe.zadd(default_queue_name, {job_id: now_ms})
                await pipe.execute()

    async def wait_count(self, n: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while int(await self.redis.get(jobs.COUNT) or 0) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {await self.redis.get(jobs.COUNT)} of {n} jobs done in {timeout_s}s")
            await asyncio.sleep(0.01)

    async def _stamps(self, first_key: str, last_key: str) -> tuple[float, float]:
        # the job that reaches the count stamps LAST right after: wait for that stamp
        for _ in range(500):
            first, last = await self.redis.mget(first_key, last_key)
            if first is not None and last is not None:
                return float(first), float(last)
            await asyncio.sleep(0.01)
        raise TimeoutError("first/last stamps missing")

    async def first_to_last_s(self) -> float:
        first, last = await self._stamps(jobs.FIRST, jobs.LAST)
        return last - first

    async def cpu_per_job_us(self, n: int) -> float:
        """The one worker's CPU time from the first job to the last, per job (stamped by ``noop``)."""
        first, last = await self._stamps(jobs.FIRST_CPU, jobs.LAST_CPU)
        return (last - first) / (n - 1) * 1e6

    # workloads ------------------------------------------------------------------------------------------
    async def enqueue(self, variant: str) -> None:
        await self.redis.flushdb()
        if variant == "ours":
            started = time.perf_counter()
            for _ in range(DRAIN_N):
                await self.ours.enqueue(jobs.noop)
            self.results.add("enqueue sequential (jobs/s)", variant, DRAIN_N / (time.perf_counter() - started))
            started = time.perf_counter()
            for _ in range(DRAIN_N // 100):
                await self.ours.enqueue_many([jobs.noop.call() for _ in range(100)])
            self.results.add("enqueue batch 100 (jobs/s)", variant, DRAIN_N / (time.perf_counter() - started))
        else:
            started = time.perf_counter()
            for _ in range(DRAIN_N):
                await self.redis.enqueue_job("noop")
            self.results.add("enqueue sequential (jobs/s)", variant, DRAIN_N / (time.perf_counter() - started))
            started = time.perf_counter()
            for _ in range(DRAIN_N // 100):
                await asyncio.gather(*(self.redis.enqueue_job("noop") for _ in range(100)))
            self.results.add("enqueue batch 100 (jobs/s)", variant, DRAIN_N / (time.perf_counter() - started))

    async def run_filled(self, variant: str, job: str, n: int, timeout_s: float, **start: Any) -> float:
        """Fill the queue with ``n`` jobs, run workers until all are done, stop them; the first worker's peak RSS."""
        await self.redis.flushdb()
        await self.fill(variant, job, n)
        await self.redis.config_resetstat()  # the worker's commands only (``lua_calls_per_job``)
        procs = self.start(variant, n, **start)
        try:
            await self.wait_count(n, timeout_s)
            return self.peak_rss_mib(procs[0])
        finally:
            self.stop(procs)

    async def drain(self, variant: str, *, debug_log: bool = False) -> None:
        rss = await self.run_filled(variant, "noop", DRAIN_N, 300, debug_log=debug_log)
        label = variant + ("+debug-log" if debug_log else "")
        self.results.add("drain 10k (jobs/s)", label, DRAIN_N / await self.first_to_last_s())
        if not debug_log:
            self.results.add("drain 10k, worker CPU per job (µs)", variant, await self.cpu_per_job_us(DRAIN_N))
            self.results.add("worker peak RSS (MiB)", variant, rss)

    async def drain_limits(self, variant: str) -> None:
        """The drain of a job with a limit that never binds against the same job without: what a limit costs."""
        job = {"ours": "noop", "ours+max_concurrency": "capped", "ours+rate_limit": "paced"}[variant]
        await self.redis.flushdb()
        await self.fill("ours", job, DRAIN_N)
        procs = self.start("ours", DRAIN_N)
        try:
            await self.wait_count(DRAIN_N, 300)
        finally:
            self.stop(procs)
        self.results.add("drain 10k, limits (jobs/s)", variant, DRAIN_N / await self.first_to_last_s())

    async def drain_io(self, variant: str) -> None:
        """The drain with a body that awaits one INCR on a client of its own (not the worker's pool)."""
        await self.run_filled(variant, "io", DRAIN_N, 300)
        self.results.add("drain 10k, I/O body (jobs/s)", variant, DRAIN_N / await self.first_to_last_s())
        self.results.add("drain 10k, I/O body, worker CPU per job (µs)", variant, await self.cpu_per_job_us(DRAIN_N))
        if variant == "ours":  # what CPU per job varies with most from run to run (README "Per-job cost")
            self.results.add("drain 10k, I/O body, Lua calls per job", variant, await self.lua_calls_per_job(DRAIN_N))

    async def lua_calls_per_job(self, n: int) -> float:
        """Scripts the worker ran (claims and outcome writes) per job, since ``run_filled`` reset the counts."""
        stats = await self.redis.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval")) / n

    async def drain_metrics(self, variant: str) -> None:
        """What metrics cost: the drain with them off (``ours``) and on (``ours+metrics``), interleaved."""
        await self.run_filled(variant, "noop", DRAIN_N, 300)
        self.results.add("drain 10k, metrics off/on (jobs/s)", variant, DRAIN_N / await self.first_to_last_s())

    async def metrics_cost(self, variant: str) -> None:
        """The hot path's metric work per try (started, then finished), measured in this process."""
        from src.runner.finish import Outcome
        from src.runner.metrics import JobMetrics

        metered = JobMetrics(f"bench-{variant}", ["noop"])
        outcome = Outcome(b"id", "done", b"", 0, succeeded=True)
        n = 200_000
        started = time.perf_counter()
        for _ in range(n):
            metered.started("noop", 0).finished(outcome, 0.001)
        self.results.add("metrics per try (µs)", variant, (time.perf_counter() - started) / n * 1e6)

    async def drain_debug_log(self, variant: str) -> None:
        await self.drain(variant, debug_log=True)

    async def drain_telemetry(self, variant: str) -> None:
        """What observability costs: ``ours`` (all off) against a worker with metrics, traces, JSON logs and Sentry
        on, interleaved: ``ours+telemetry`` with 1 % of traces sampled (by the service that enqueues; the worker
        follows), ``ours+telemetry+all-traced`` with every one. Each job is enqueued in a trace of its own, as a
        service's requests would. ``BENCH_TELEMETRY_PARTS`` (``metrics,traces,logs,sentry``) picks the parts."""
        telemetry = "+telemetry" in variant
        sampled = 1.0 if variant.endswith("+all-traced") else TRACES_SAMPLED
        parts = os.environ.get("BENCH_TELEMETRY_PARTS", "metrics,traces,logs,sentry")
        await self.redis.flushdb()
        if telemetry:
            from bench import telemetry as switch

            switch.trace(sampled)
            try:
                for i in range(0, DRAIN_N, 100):  # one enqueue, one trace per job
                    await asyncio.gather(*(self.ours.enqueue(jobs.noop) for _ in range(min(100, DRAIN_N - i))))
            finally:
                tracing.uninstrument()
        else:
            await self.fill("ours", "noop", DRAIN_N)
        worker = "ours+metrics" if telemetry and "metrics" in parts else "ours"
        procs = self.start(worker, DRAIN_N, telemetry=telemetry, env={"BENCH_TRACES_SAMPLED": str(sampled)})
        try:
            await self.wait_count(DRAIN_N, 300)
        finally:
            self.stop(procs)
        metric = f"drain 10k, observability off/on ({parts})"
        self.results.add(f"{metric} (jobs/s)", variant, DRAIN_N / await self.first_to_last_s())
        self.results.add(f"{metric} (worker CPU µs/job)", variant, await self.cpu_per_job_us(DRAIN_N))

    async def sleep_load(self, variant: str) -> None:
        await self.run_filled(variant, "sleepy", SLEEP_N, 120, max_jobs=100)
        self.results.add("2000 x sleep 50ms, c=100 (s)", variant, await self.first_to_last_s())

    async def waiters(self, variant: str) -> None:
        """1,000 concurrent ``result()`` waiters on jobs that end one every 2 ms from 2 s on: Redis commands/s while
        they all wait (from 0.5 to 1.5 s), and the latency from a job's end to its ``result()`` returning.
        ``ours``: woken by the finish's announcement; ``ours+polling``: the client polls
        (``result_wakeups=False``, how results were waited for before)."""
        await self.redis.flushdb()
        client = JobClient(self.ours.redis, self.ours.codec, result_wakeups=not variant.endswith("+polling"))
        handles = await client.enqueue_many([jobs.ends_after.call(2.0 + i * 0.002) for i in range(WAITERS_N)])

        async def wait(handle: Any) -> float:
            """ms from the job's end to its result here"""
            ended = float(await handle.result(timeout_s=60))
            return (time.time() - ended) * 1000

        waiting = [asyncio.create_task(wait(h)) for h in handles]
        procs = self.start("ours", 0, max_jobs=WAITERS_N)
        try:
            await asyncio.sleep(0.5)  # started: all 1,000 running, none near its end
            before = (await self.redis.info("stats"))["total_commands_processed"]
            await asyncio.sleep(1.0)
            after = (await self.redis.info("stats"))["total_commands_processed"]
            latencies_ms = sorted(await asyncio.gather(*waiting))
        finally:
            self.stop(procs)
        self.results.add("1000 result() waiters: Redis commands/s while waiting", variant, after - before)
        self.results.add("1000 result() waiters: job end to result p50 (ms)", variant, latencies_ms[WAITERS_N // 2])
        self.results.add("1000 result() waiters: job end to result p99 (ms)", variant,
                         latencies_ms[int(WAITERS_N * 0.99) - 1])  # fmt: skip

    async def pickup(self, variant: str) -> None:
        await self.redis.flushdb()
        procs = self.start(variant, 0)
        latencies: list[float] = []
        try:
            await asyncio.sleep(2)  # started and idle
            for _ in range(PICKUP_N):
                if variant == "ours":
                    await self.ours.enqueue(jobs.stamp, time.time())
                else:
                    await self.redis.enqueue_job("stamp", time.time())
                popped = await self.redis.blpop([jobs.LATENCY], timeout=5)
                assert popped is not None, "job did not start within 5 s"
                latencies.append(float(popped[1]) * 1000)
            commands = await self.idle_commands_per_s()
        finally:
            self.stop(procs)
        latencies.sort()
        self.results.add("pickup p50 (ms)", variant, latencies[len(latencies) // 2])
        self.results.add("pickup p99 (ms)", variant, latencies[int(len(latencies) * 0.99) - 1])
        self.results.add("idle worker (commands/s)", variant, commands)

    async def idle_commands_per_s(self, seconds: float = 5.0) -> float:
        """Commands the idle worker sends (what MONITOR shows, less the calls Lua scripts make inside)."""
        await asyncio.sleep(1.5)
        monitor = await asyncio.create_subprocess_exec(
            "redis-cli", "-p", str(self.server.port), "monitor", stdout=asyncio.subprocess.PIPE
        )
        assert monitor.stdout is not None
        sent = 0
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    line = await asyncio.wait_for(monitor.stdout.readline(), left)
                except TimeoutError:
                    break
                if line and b" [0 lua]" not in line and not line.startswith(b"OK"):
                    sent += 1
        finally:
            monitor.kill()
            await monitor.wait()
        return sent / seconds

    async def workflows(self, variant: str) -> None:
        """A 3-step chain against three independent jobs of the same body, one worker: ``CHAINS_N`` of them drained
        (enqueued at once), then ``CHAIN_ROUNDS`` run one at a time, end to end (``independent``: each job enqueued
        when the one before returned, its result awaited — what a caller does without workflows)."""
        await self.redis.flushdb()
        procs = self.start("ours", 0)
        try:
            await asyncio.sleep(2)  # started and idle
            started = time.perf_counter()
            if variant == "chain":
                flow = chain(jobs.chained.s(0), jobs.chained.s(), jobs.chained.s())
                for _ in range(CHAINS_N):  # one round trip each (side by side, they would open a connection each)
                    await self.ours.enqueue_workflow(flow)
            else:
                await self.ours.enqueue_many([jobs.chained.call(0) for _ in range(3 * CHAINS_N)])
            await self.wait_count(3 * CHAINS_N, 120)
            self.results.add("3 jobs: chained vs independent, drain (jobs/s)", variant,
                             3 * CHAINS_N / (time.perf_counter() - started))  # fmt: skip
            rounds_ms: list[float] = []
            for _ in range(CHAIN_ROUNDS):
                started = time.perf_counter()
                if variant == "chain":
                    handle = await self.ours.enqueue_workflow(flow)
                    assert await handle.result(timeout_s=10) == 3
                else:
                    x = 0
                    for _ in range(3):
                        x = await (await self.ours.enqueue(jobs.chained, x)).result(timeout_s=10)
                rounds_ms.append((time.perf_counter() - started) * 1000)
        finally:
            self.stop(procs)
        self.results.add("3 jobs one after another, end to end p50 (ms)", variant, statistics.median(rounds_ms))

    async def deferred(self, variant: str) -> None:
        """How late deferred jobs start after their due time (ours only: the poll floor decides it for arq)."""
        await self.redis.flushdb()
        procs = self.start(variant, 0)
        lateness: list[float] = []
        try:
            await asyncio.sleep(2)
            for i in range(20):
                due = time.time() + 0.05 + (i % 5) * 0.05
                await self.ours.enqueue(jobs.stamp.options(defer_until=datetime.fromtimestamp(due, UTC)), due)
                popped = await self.redis.blpop([jobs.LATENCY], timeout=5)
                assert popped is not None
                lateness.append(float(popped[1]) * 1000)
        finally:
            self.stop(procs)
        lateness.sort()
        self.results.add("deferred start late p50 (ms)", variant, lateness[len(lateness) // 2])
        self.results.add("deferred start late max (ms)", variant, lateness[-1])

    async def fleet(self, variant: str) -> None:
        await self.run_filled(variant, "tracked", DRAIN_N, 300, count=4)
        seen = await self.redis.hvals(jobs.SEEN)
        self.results.add("4 workers drain 10k (jobs/s)", variant, DRAIN_N / await self.first_to_last_s())
        self.results.add("4 workers duplicates", variant, sum(int(v) > 1 for v in seen) + DRAIN_N - len(seen))

    async def redis_cpu(self, variant: str) -> None:
        """redis-server CPU per job (enqueue, run, finish), from its own counters: what sets how many jobs/s one
        Redis (one shard) can carry. Each variant enqueues with its own client, one job at a time."""
        await self.redis.flushdb()
        before = await self.redis_cpu_s()
        for _ in range(CPU_N):
            if variant == "ours":
                await self.ours.enqueue(jobs.noop)
            else:
                await self.redis.enqueue_job("noop")
        procs = self.start(variant, CPU_N)
        try:
            await self.wait_count(CPU_N, 300)
        finally:
            self.stop(procs)
        used_us = (await self.redis_cpu_s() - before) * 1e6
        self.results.add("Redis CPU per job (µs)", variant, used_us / CPU_N)

    async def redis_cpu_s(self) -> float:
        cpu = await self.redis.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    async def cluster(self, variant: str) -> None:
        """The same workers on one Redis and on three cluster masters: drain rate, each shard's Redis CPU per job
        and the projected per-shard ceiling (``bench/cluster.py``: the method)."""
        from bench import cluster

        await cluster.drain(variant, self.results.add)

    async def remote(self, variant: str) -> None:
        """Redis 2 ms away (``delay_proxy.py``: 1 ms each way): drain and pickup, where round trips per job count."""
        port = free_port()
        proxy = subprocess.Popen([sys.executable, "-m", "bench.delay_proxy", str(port), str(self.server.port), "1"])
        try:
            await wait_listening(port)
            await self.run_filled(variant, "noop", REMOTE_N, 300, port=port)
            self.results.add("drain 2k at 2 ms RTT (jobs/s)", variant, REMOTE_N / await self.first_to_last_s())
            latencies = await self.pickup_latencies(variant, REMOTE_PICKUP_N, port)
            self.results.add("pickup p50 at 2 ms RTT (ms)", variant, latencies[len(latencies) // 2])
        finally:
            proxy.kill()
            proxy.wait()

    async def pickup_latencies(self, variant: str, n: int, port: int) -> list[float]:
        """Enqueue ``n`` stamp jobs one at a time through ``port`` to an idle worker; each one's start latency."""
        await self.redis.flushdb()
        settings = RedisSettings(port=port)
        client = await JobClient.connect(settings, Codec())
        arq_client = await create_pool(settings)
        procs = self.start(variant, 0, port=port)
        latencies: list[float] = []
        try:
            await asyncio.sleep(2)  # started and idle
            for _ in range(n):
                if variant == "ours":
                    await client.enqueue(jobs.stamp, time.time())
                else:
                    await arq_client.enqueue_job("stamp", time.time())
                popped = await self.redis.blpop([jobs.LATENCY], timeout=5)
                assert popped is not None, "job did not start within 5 s"
                latencies.append(float(popped[1]) * 1000)
        finally:
            self.stop(procs)
            await client.close()
            await arq_client.aclose()
        return sorted(latencies)

    async def backlog(self, variant: str) -> None:
        """Drain rate over three windows of 20k jobs from the front of a 1M-job backlog."""
        await self.redis.flushdb()
        started = time.perf_counter()
        await self.fill(variant, "noop", BACKLOG_N)
        print(f"  filled {BACKLOG_N:,} jobs in {time.perf_counter() - started:.0f}s", flush=True)
        procs = self.start(variant, BACKLOG_N)
        try:
            marks = [BACKLOG_WINDOW * i for i in range(RUNS + 1)]
            times = []
            for mark in marks:
                await self.wait_count(max(mark, 1), 300)
                times.append(time.perf_counter())
            for a, b in itertools.pairwise(times):
                self.results.add("drain at 1M backlog (jobs/s)", variant, BACKLOG_WINDOW / (b - a))
        finally:
            self.stop(procs)
        await self.redis.flushdb()


async def wait_listening(port: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


async def each(runs: int, variants: list[str], workload: Callable[[str], Awaitable[None]]) -> None:
    name = getattr(workload, "__name__", "")
    if ONLY and name not in ONLY:
        return
    for run in range(runs):
        for variant in variants:
            print(f"{workload.__name__} run {run + 1}/{runs}: {variant}", flush=True)
            await workload(variant)


async def main() -> None:
    started = time.perf_counter()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    server = RedisServer(data_dir, options={"save": "''", "appendonly": "no"}).start()
    try:
        async with Bench(server) as b:
            await each(RUNS, ["ours", "arq"], b.enqueue)
            await each(RUNS, VARIANTS, b.drain)
            await each(RUNS, ["ours", "ours+max_concurrency", "ours+rate_limit"], b.drain_limits)
            await each(RUNS, ["ours", "arq-tuned"], b.drain_io)
            await each(RUNS, ["ours"], b.drain_debug_log)
            await each(RUNS, TELEMETRY_VARIANTS, b.drain_telemetry)
            await each(RUNS, ["ours", "ours+metrics"], b.drain_metrics)
            await each(RUNS, ["ours"], b.metrics_cost)
            await each(RUNS, VARIANTS, b.sleep_load)
            await each(RUNS, VARIANTS, b.pickup)
            await each(RUNS, ["ours", "ours+polling"], b.waiters)
            await each(RUNS, ["ours"], b.deferred)
            await each(RUNS, ["independent", "chain"], b.workflows)
            await each(RUNS, ["ours", "arq-tuned"], b.fleet)
            await each(RUNS, ["ours", "arq-tuned"], b.redis_cpu)
            await each(RUNS, ["ours", "arq-tuned"], b.remote)
            await each(RUNS, ["one node", "cluster"], b.cluster)
            await each(1, ["ours", "arq-tuned"], b.backlog)
            report = render(b.results, time.perf_counter() - started)
    finally:
        server.stop()
    if not ONLY:  # a partial run is for development; RESULTS.md always holds a whole one
        (ROOT / "bench" / "RESULTS.md").write_text(report)
    print(report)


HIGHER_IS_BETTER = ("jobs/s",)


def render(results: Results, elapsed_s: float) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"`make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, one local redis-server without persistence; {RUNS} runs per variant, "
        f"interleaved; median (min–max). Took {elapsed_s / 60:.1f} min.",
        "",
        "Variants: **ours** = our worker and client with default settings; **arq tuned** = stock arq 0.28 on "
        "uvloop with `max_jobs=100, poll_delay=0.01`; **arq defaults** = stock arq 0.28 as installed "
        "(asyncio, pickle, `poll_delay=0.5`, `max_jobs=10`). The sleep load runs every variant at "
        "`max_jobs=100`. Ratios are ours ÷ arq (for times and sizes: arq ÷ ours), so > 1 means ours is better.",
        "",
        "| metric | ours | arq tuned | arq defaults | vs arq tuned | vs arq defaults |",
        "|---|---|---|---|---|---|",
    ]
    for metric, by_variant in results.samples.items():
        cells = []
        for variant in ("ours", "arq-tuned", "arq"):
            values = by_variant.get(variant)
            cells.append(_cell(values) if values else "–")
        ratios = [
            _ratio(metric, results.median(metric, "ours"), results.median(metric, v)) for v in ("arq-tuned", "arq")
        ]
        lines.append(f"| {metric} | {' | '.join(cells)} | {' | '.join(ratios)} |")
        for extra, values in by_variant.items():
            if extra not in ("ours", "arq-tuned", "arq"):
                lines.append(f"| {metric}, {extra} | {_cell(values)} | | | | |")
    lines += [
        "",
        "Reproduce: `make bench` (installs what it needs; `BENCH_RUNS`, `BENCH_BACKLOG` to change sizes; "
        "`BENCH_ONLY=enqueue,sleep_load` runs some workloads and leaves this file alone).",
        "",
    ]
    return "\n".join(lines)


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):,.2f} ({min(values):,.2f}–{max(values):,.2f})"


def _ratio(metric: str, ours: float | None, other: float | None) -> str:
    if not ours or not other:
        return "–"
    ratio = ours / other if any(unit in metric for unit in HIGHER_IS_BETTER) else other / ours
    return f"{ratio:,.1f}×"


if __name__ == "__main__":
    uvloop.run(main())
