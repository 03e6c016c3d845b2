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
    "ABORT_KEY_PREFIX",
    "BULK_OP_KEY_PREFIX",
    "BULK_OP_TTL_MS",
    "CLUSTER_REFUSED_RETRY_S",
    "CRON_ENTRIES_KEY",
    "CRON_STARTUP_WINDOW_MS",
    "CRON_STATE_KEY_PREFIX",
    "CRON_TICK_KEY_PREFIX",
    "CRON_TICK_TTL_MS",
    "DEFAULT_CRON_MAX_DRIFT_S",
    "DEFAULT_CRON_MAX_MISSED_RUNS",
    "DEFAULT_DLQ_RETENTION_S",
    "DEFAULT_JOB_TIMEOUT_S",
    "DEFAULT_KEEP_RESULT_S",
    "DEFAULT_LEASE_S",
    "DEFAULT_MAX_JOBS",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_MAX_RESULT_BYTES",
    "DEFAULT_POLL_DELAY_S",
    "DEFAULT_SHUTDOWN_GRACE_S",
    "DEFAULT_SOCKET_TIMEOUT_S",
    "DLQ_ENTRY_KEY_PREFIX",
    "DLQ_KEY_PREFIX",
    "DONE_CHANNEL_PREFIX",
    "DURATIONS_KEY_PREFIX",
    "DURATIONS_TTL_MS",
    "EXPIRES_EXTRA_MS",
    "HANDOFF_LEASE_MS",
    "HEARTBEAT_KEY_PREFIX",
    "HELD_SCORE_MS",
    "IDLE_KEY_PREFIX",
    "JOB_NOTES_TTL_MS",
    "KEY_LAYOUT_VERSION",
    "LAYOUT_KEY",
    "LIMITS_KEY_PREFIX",
    "LIMIT_BUCKETS_KEY_PREFIX",
    "LIMIT_HELD_KEY_PREFIX",
    "LIMIT_KEY_KEPT_CHARS",
    "LIMIT_KEY_MAX_CHARS",
    "LIMIT_OF_KEY_PREFIX",
    "LIMIT_RATE_KEY_PREFIX",
    "LIMIT_RUNNING_KEY_PREFIX",
    "LIMIT_SWEEP_BUCKETS",
    "LIMIT_WAITING_KEY_PREFIX",
    "MAX_WAKE_TOKENS",
    "MAX_WRITES_IN_FLIGHT",
    "OUTCOMES_KEY_PREFIX",
    "OUTCOMES_TTL_MS",
    "PAUSED_KEY_PREFIX",
    "PRIORITY_MAX",
    "PRIORITY_STEP_MS",
    "PROGRESS_KEY_PREFIX",
    "QUEUES_KEY",
    "REWIND_KEY_PREFIX",
    "SHUTDOWN_WRITE_BOUND_S",
    "SLOT_GUARD_KEY_PREFIX",
    "TRY_ERRORS_KEY_PREFIX",
    "WAKE_KEY_PREFIX",
    "WIRE_VERSION",
    "WORKERS_KEY_PREFIX",
    "WORKER_LIST_PREFIX",
    "WORKFLOW_KEY_PREFIX",
    "abort_jobs_ss",
    "default_queue_name",
    "in_progress_key_prefix",
    "job_key_prefix",
    "result_key_prefix",
    "retry_key_prefix",
]

#: version field of the JSON envelope every payload is wrapped in
WIRE_VERSION = 1

#: the key layout this code reads and writes (the names below, arq's, and the hash tags of ``keyspace.py``);
#: kept in Redis at :data:`LAYOUT_KEY`, where a worker refuses a layout it does not know
KEY_LAYOUT_VERSION = 1
LAYOUT_KEY = "jobs:layout"

DEFAULT_JOB_TIMEOUT_S = 300.0
DEFAULT_KEEP_RESULT_S = 3600.0
DEFAULT_MAX_JOBS = 50
#: on SIGTERM, how long running jobs may take to finish before they are put back (under k8s's default 30 s)
DEFAULT_SHUTDOWN_GRACE_S = 25.0
#: how long a running job's in-progress key lives unless renewed (renewed every lease/3)
DEFAULT_LEASE_S = 30.0
#: fallback poll of an idle worker, for producers that push no wake-up token (plain arq clients);
#: an idle worker sends about two commands per poll
DEFAULT_POLL_DELAY_S = 1.0
DEFAULT_MAX_PAYLOAD_BYTES = 512 * 1024
#: a job's result, encoded, larger than this fails the job instead of being stored
DEFAULT_MAX_RESULT_BYTES = 512 * 1024
#: a worker's Redis commands wait this long for a reply before the connection counts as dead (half-open)
DEFAULT_SOCKET_TIMEOUT_S = 5.0
#: how long the cluster client sends a command again that the cluster refused without running it (``TRYAGAIN``
#: while its slot moves between masters): the length of a slot move it rides out
CLUSTER_REFUSED_RETRY_S = 30.0
#: outcome writes a worker keeps in flight side by side: a finished job's outcome waits for none of them (the
#: window a crash loses it in is one turn of the loop), yet batches still grow once all are busy
MAX_WRITES_IN_FLIGHT = 4
#: on shutdown, how long outcomes not yet written (Redis away) are tried before they are left to the leases
SHUTDOWN_WRITE_BOUND_S = 5.0
#: how long after its due time an unstarted job key lives (arq's default: one day)
EXPIRES_EXTRA_MS = 86_400_000

#: abort set of a queue (``<prefix><queue name>``) in a Redis Cluster, where arq's one ``arq:abort`` cannot share a
#: slot with every queue; a single node keeps arq's set (``keyspace.abort_key``)
ABORT_KEY_PREFIX = "jobs:abort:"
#: + queue name: the pub/sub channel the finish script announces jobs that ended on (ids, NUL-separated), read by
#: clients waiting for results (result_waiters.py)
DONE_CHANNEL_PREFIX = "jobs:done:"

#: list an idle worker blocks on; every enqueue pushes one token (``<prefix><queue name>``)
WAKE_KEY_PREFIX = "jobs:wake:"
#: tokens kept at most: a token wakes one worker, so more than a few only cost empty claims
MAX_WAKE_TOKENS = 16

#: idle workers of a queue (``<prefix><queue name>``), scored by when their registration expires
IDLE_KEY_PREFIX = "jobs:idle:"
#: + queue name: set while the queue is paused (its value: when, ms); no worker claims from it (pausing.py)
PAUSED_KEY_PREFIX = "jobs:paused:"
#: + queue name: the lowest due time of a job enqueued behind the present (a priority's head start), set by
#: enqueue.lua when no idle worker took it; the next claim scans from there, since the workers' cursors are past it
REWIND_KEY_PREFIX = "jobs:rewind:"
#: + queue name: never written. A script that reads keys it finds through the queue declares it, so that while
#: the queue's slot moves between masters the cluster refuses the script (``TRYAGAIN``: a declared key is
#: missing) instead of running it where some of those keys have already left (slot_move.py)
SLOT_GUARD_KEY_PREFIX = "jobs:slot-guard:"
#: a job of priority p counts as enqueued p times this much earlier: it is scored so in the queue (readable by
#: any arq worker), which is also the ageing rule — a job that waited longer than that runs before it
PRIORITY_STEP_MS = 60_000
#: the highest priority (a head start of about 16 hours)
PRIORITY_MAX = 1000
#: a worker's own list (``<prefix><worker id>``): jobs handed to it already claimed, by enqueue.lua
WORKER_LIST_PREFIX = "jobs:worker:"
#: the lease (and list lifetime) of a job handed to an idle worker until the worker takes it: a worker that died
#: just after registering as idle holds the job this long, not a whole lease
HANDOFF_LEASE_MS = 3000

#: a worker's record in the worker registry (``<prefix><worker id>``, JSON, expires unless its heartbeat renews it)
HEARTBEAT_KEY_PREFIX = "jobs:heartbeat:"
#: the workers of a queue (``<prefix><queue name>``), scored by their last heartbeat (ms)
WORKERS_KEY_PREFIX = "jobs:workers:"
#: set of the names of the queues workers serve
QUEUES_KEY = "jobs:queues"
#: outcomes per minute of a queue (``<prefix><queue name>:<epoch minute>``): a hash of counts by outcome, written
#: with the outcomes, kept :data:`OUTCOMES_TTL_MS`; ``hasten status`` and the dashboard read throughput from it
OUTCOMES_KEY_PREFIX = "jobs:outcomes:"
OUTCOMES_TTL_MS = 2 * 3_600_000
#: try durations per minute of a queue (``<prefix><queue name>:<epoch minute>``): a hash of counts by
#: ``<function>|<log-scale bucket>`` (``durations.py``), written with the outcomes, kept :data:`DURATIONS_TTL_MS`;
#: ``hasten status`` and the dashboard read p50/p95 per function from it
DURATIONS_KEY_PREFIX = "jobs:durations:"
DURATIONS_TTL_MS = 2 * 3_600_000

#: list per job of the errors of its failed tries that were retried (``<prefix><job id>``)
TRY_ERRORS_KEY_PREFIX = "jobs:errors:"
#: a running job's last ``ctx.progress(...)`` report (``<prefix><job id>``)
PROGRESS_KEY_PREFIX = "jobs:progress:"
#: how long try errors and progress reports are kept
JOB_NOTES_TTL_MS = 86_400_000

#: dead-letter queue: zset of job ids by the time they died (``<prefix><queue name>``)
DLQ_KEY_PREFIX = "jobs:dlq:"
#: one dead job's record (``<prefix><job id>``): function, arguments, error, traceback, tries, payload
DLQ_ENTRY_KEY_PREFIX = "jobs:dlq:entry:"
#: how long dead jobs are kept for inspection and requeue
DEFAULT_DLQ_RETENTION_S = 14 * 86_400.0

#: a dashboard's bulk dead-letter operation (``<prefix><operation id>``): a hash of its filter and progress, kept
#: :data:`BULK_OP_TTL_MS` from its last write, so any dashboard process behind a load balancer can show it
BULK_OP_KEY_PREFIX = "jobs:dashboard:op:"
BULK_OP_TTL_MS = 3_600_000

#: ``SET NX`` marker per cron entry and tick; whoever sets it enqueues that tick
CRON_TICK_KEY_PREFIX = "jobs:cron:tick:"
#: tick markers outlive any sensible clock skew between hosts
CRON_TICK_TTL_MS = 86_400_000
#: hash per cron entry (``<prefix><entry name>``): its definition, last tick, last run's status and duration,
#: next tick, skipped ticks; written by the enqueue and finish scripts, read by ``hasten cron``
CRON_STATE_KEY_PREFIX = "jobs:cron:state:"
#: set of the names of every cron entry any worker has run, for listing their state
CRON_ENTRIES_KEY = "jobs:cron:entries"
#: ``run_at_startup``: workers starting within this long of each other enqueue one startup run between them
CRON_STARTUP_WINDOW_MS = 60_000
#: missed-run policies ``latest``/``all``: a missed tick older than this does not run
DEFAULT_CRON_MAX_DRIFT_S = 3600.0
#: missed-run policy ``all``: at most this many missed ticks run (the most recent ones)
DEFAULT_CRON_MAX_MISSED_RUNS = 100

#: a workflow's state (``<prefix><workflow id>``, a hash: each step's function, status, successors, pending
#: predecessors and result; the workflow's status and error), written when it is enqueued (``workflow.lua``) and
#: advanced by the finish script; the workflow id carries its queue's hash tag (``workflow_ids.py``)
WORKFLOW_KEY_PREFIX = "jobs:workflow:"
#: + queue name: a hash of the limits of the queue's functions, ``<function>`` -> ``<max concurrency>|<rate count>|
#: <rate period ms>`` (empty: none), and ``default|<function>``: the decorator's value the current one came from
#: (limits.py); written at worker start, changed at run time by ``hasten limits set``
LIMITS_KEY_PREFIX = "jobs:limits:"
#: + job id: the side entry of a job of a limited function, written by the enqueue: a hash of ``f`` (function),
#: ``k`` (the limit key, when per key) and ``r`` (the start time its rate reserved for it, ms). A job without one
#: (an unlimited function, a stock arq enqueue) costs the claim nothing
LIMIT_OF_KEY_PREFIX = "jobs:limit-of:"
#: + queue name + newline + bucket (``<function>`` or ``<function>`` newline ``<key>``): the jobs holding a slot,
#: a zset scored by when their lease was last seen to end (ms); a member whose in-progress key is gone after that
#: gives its slot back (a killed worker's)
LIMIT_RUNNING_KEY_PREFIX = "jobs:limit:running:"
#: + queue name + newline + bucket: jobs waiting for a slot, a zset scored by their due time (their order); a held
#: job stays in the queue zset at :data:`HELD_SCORE_MS`, out of every claim's reach (arq's status: deferred)
LIMIT_HELD_KEY_PREFIX = "jobs:limit:held:"
#: + queue name + newline + bucket: the rate limit's theoretical arrival time (GCRA), ms
LIMIT_RATE_KEY_PREFIX = "jobs:limit:rate:"
#: + queue name: the buckets with running or held jobs (a set), for ``hasten limits`` and the claim's sweep
LIMIT_BUCKETS_KEY_PREFIX = "jobs:limit:buckets:"
#: + queue name: the buckets with held jobs (a set): the ones a claim's sweep looks at (a slot given back there by a
#: lease's end lets a held job run; elsewhere it is found by the next claim of that bucket's jobs)
LIMIT_WAITING_KEY_PREFIX = "jobs:limit:waiting:"
#: queue score of a held job: far beyond any due time (year 33658), so no claim (ours or stock arq's) takes it
HELD_SCORE_MS = 10**15
#: a limit key longer than this (characters) is kept as its first LIMIT_KEY_KEPT_CHARS and a digest of the whole: it is
#: part of several key names and set members per job, and printed by ``hasten limits``
LIMIT_KEY_MAX_CHARS = 200
LIMIT_KEY_KEPT_CHARS = 100
#: buckets one claim looks at when it sweeps (slots whose lease ended with nobody to finish them)
LIMIT_SWEEP_BUCKETS = 16
