"""``hasten check``: is a worker alive, and ready? Exit code 0 ready, 1 alive but not ready, 2 not alive (or not
reachable), from one of two sources:

- **the endpoint** (``/livez`` then ``/readyz``; default when ``JOBS_METRICS_PORT`` is set): the worker's own
  answer, for a container's health check or a systemd watchdog on the same host;
- **Redis** (``--via-redis``): the worker registry's heartbeats (``worker_registry.py``). A worker of the queue on
  this host (or any host, ``--any-host``) whose heartbeat is at most two heartbeats old is ready; one whose record
  is still alive but older (its loop, or its writes to Redis, lag) is alive but not ready; none, or Redis not
  answering, is 2.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from enum import IntEnum

from redis.asyncio import Redis

from .worker_registry import HEARTBEAT_S, live_workers

#: each HTTP request of the check waits at most this long
HTTP_TIMEOUT_S = 2.0


class Verdict(IntEnum):
    READY = 0
    NOT_READY = 1
    DOWN = 2


def _get(url: str) -> tuple[int, str]:
    """(status, first line of the body); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return int(response.status), response.read(500).decode(errors="replace").strip()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read(500).decode(errors="replace").strip()
    except (OSError, ValueError) as e:  # refused, timed out, a bad URL
        return 0, str(getattr(e, "reason", e))


def check_endpoint(base_url: str) -> tuple[Verdict, str]:
    """Ask the endpoint at ``base_url`` (``http://127.0.0.1:9100``)."""
    base_url = base_url.rstrip("/")
    status, said = _get(base_url + "/livez")
    if status != 200:
        return Verdict.DOWN, f"not alive: {base_url}/livez answered {status or 'nothing'} ({said})"
    status, said = _get(base_url + "/readyz")
    if status != 200:
        return Verdict.NOT_READY, f"alive, {said or f'not ready ({status})'}"
    return Verdict.READY, "ready"


async def check_registry(redis: Redis, queue: str, host: str | None) -> tuple[Verdict, str]:
    """Ask the worker registry about the workers of ``queue`` on ``host`` (None: any host)."""
    workers = [w for w in await live_workers(redis, queue) if host is None or w.host == host]
    where = f"on {host}" if host else "on any host"
    if not workers:
        return Verdict.DOWN, f"no worker of queue {queue!r} alive {where}"
    fresh_ms = (time.time() - 2 * HEARTBEAT_S) * 1000
    fresh = [w for w in workers if w.heartbeat_ms >= fresh_ms]
    if not fresh:
        return Verdict.NOT_READY, f"{len(workers)} worker(s) of queue {queue!r} {where}, none with a recent heartbeat"
    return Verdict.READY, f"ready: {len(fresh)} worker(s) of queue {queue!r} {where}"


def this_host() -> str:
    return socket.gethostname()
