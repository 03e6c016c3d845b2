"""How an idle worker waits: blocked on its queue's wake-up list, not sleeping through a poll delay.

Every enqueue pushes a token (``scripts/enqueue.lua``), so a blocked worker wakes within a round trip; better
still, when this worker registered as idle, the enqueue hands it the job itself, already claimed, on its own
list, so the pop returns the job and the worker starts it without another round trip.
Redis times out blocked commands only at its ``hz`` resolution (100 ms by default), so when the worker must
wake at a precise moment (a deferred job falls due) a local timer unblocks the connection with
``CLIENT UNBLOCK`` instead; plain-arq producers push no token and are found by the fallback poll.
A pop is bounded twice: it blocks for less than the pool's socket timeout (``sockets.py``; a longer idle wait is
several pops), and a local timer of its own timeout plus a margin ends it: a half-open connection costs one
margin and is then replaced by a new one.

On a Redis Cluster the pop's connection goes to the master of the queue's slot (the worker's own list shares it);
after an error — the master failed, or answered ``MOVED`` once its slot went elsewhere — the next wait reads the
cluster's layout again and connects to the slot's master then.
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis
from redis.exceptions import RedisError

from . import constants as k
from .claim import Claimed
from .cluster_pool import follow_slot, is_cluster_client, node_client

#: below this, Redis's own blocking timeout is too coarse and the local timer takes over
_PRECISE_BELOW_S = 0.2
#: how much longer than its own timeout a blocking pop may take before its connection counts as dead
_POP_MARGIN_S = 1.0
#: the longest one blocking pop waits: well under the socket timeout that bounds every reply
MAX_POP_S = k.DEFAULT_SOCKET_TIMEOUT_S - _POP_MARGIN_S - 0.5


class WakeUp:
    def __init__(self, pool: Redis, queue_name: str, worker_id: str) -> None:
        self._pool = pool
        # its own list first: a job handed to it (already claimed) beats a token
        self._keys = (k.WORKER_LIST_PREFIX + worker_id, k.WAKE_KEY_PREFIX + queue_name)
        self._cluster = is_cluster_client(pool)
        # a connection of its own: the blocking pop holds it, and CLIENT UNBLOCK needs its id
        self._conn: Redis = node_client(pool, self._keys[1]) if self._cluster else pool.client()
        #: on a cluster, where CLIENT UNBLOCK goes: the pop's node, on a connection of its own
        self._control: Redis | None = node_client(pool, self._keys[1]) if self._cluster else None
        #: on a cluster, the pop failed: its node may no longer own the slot
        self._stale = False
        self._conn_id: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._unblocking: set[asyncio.Task[None]] = set()

    async def wait(self, timeout_s: float, *, precise: bool = False) -> Claimed | float | None:
        """Block until a job is handed over, a token arrives or ``timeout_s`` passes; returns a handed job, or a
        token's due time (ms: a job was enqueued or put back due then), or None.

        ``precise``: wake at ``timeout_s`` to the millisecond (a deferred job falls due then).
        """
        if self._stale:
            await self._follow_slot()
        timeout_s = min(timeout_s, MAX_POP_S)
        precise = precise or timeout_s < _PRECISE_BELOW_S
        if precise and self._conn_id is None:
            self._conn_id = int(await self._conn.client_id())
        if precise:
            self._timer = asyncio.get_running_loop().call_later(max(timeout_s, 0), self._unblock)
        try:
            # the server-side timeout is only the backstop when the local timer is set
            server_timeout = timeout_s + 0.1 if precise else timeout_s
            async with asyncio.timeout(server_timeout + _POP_MARGIN_S):
                # BLPOP by hand: redis-py types the timeout as int, Redis takes fractional seconds
                popped = await self._conn.execute_command("BLPOP", *self._keys, server_timeout)  # type: ignore[no-untyped-call]
        except (RedisError, OSError):  # TimeoutError too: no reply within the margin, a half-open connection
            self._conn_id = None  # redis-py drops a connection interrupted mid-read: the next pop connects anew
            self._stale = self._cluster
            raise
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if popped is None:
            return None
        if popped[0] == self._keys[0].encode():
            return Claimed.unpack(popped[1])
        try:
            return float(popped[1])
        except ValueError:  # a token of an older version (b"1"): no due time
            return None

    def _unblock(self) -> None:
        self._timer = None
        if self._conn_id is not None:
            task = asyncio.create_task(self._send_unblock(self._conn_id))
            self._unblocking.add(task)
            task.add_done_callback(self._unblocking.discard)

    async def _send_unblock(self, conn_id: int) -> None:
        with contextlib.suppress(RedisError, OSError):
            await (self._control or self._pool).client_unblock(conn_id)

    async def _follow_slot(self) -> None:
        """Read the cluster's layout again and connect to the master of the queue's slot (raises while the cluster
        does not answer: the caller's outage handling retries)."""
        await follow_slot(self._pool, self._keys[1])
        await self.close()
        self._conn = node_client(self._pool, self._keys[1])
        self._control = node_client(self._pool, self._keys[1])
        self._stale = False

    async def close(self) -> None:
        # on one node the connection is the worker pool's, lent for good (that pool stays open); on a cluster the
        # node clients own their pools
        await self._conn.aclose(close_connection_pool=self._cluster)
        if self._control is not None:
            await self._control.aclose(close_connection_pool=True)
