"""One quick look at Redis before anything is built on it: a clear line instead of retries and tracebacks.

The worker (``hasten worker``, ``arq src.settings.WorkerSettings``), ``make run`` and the client check here
first; a Redis that does not answer becomes one :class:`RedisUnreachable` that names the URL (password
hidden), the variable to change and the cause, within ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import Any

import redis
import redis.asyncio
from arq.connections import RedisSettings
from redis.sentinel import MasterNotFoundError

from .errors import RedisUnreachable
from .redis_url import describe

#: how long a connect or the PING may take before Redis counts as unreachable
CHECK_TIMEOUT_S = 3.0
#: the setting people change when the URL is wrong
URL_VARIABLE = "JOBS_REDIS_URL"


def unreachable(settings: RedisSettings, error: BaseException) -> RedisUnreachable:
    """The error for a Redis that did not answer: URL, variable and cause in one line."""
    if settings.sentinel:
        if isinstance(error, MasterNotFoundError):  # its text lists every sentinel's client and error: too long
            cause = "no sentinel answered with its address (are they up, and is that name monitored?)"
        else:
            cause = _cause(error)
        return RedisUnreachable(f"cannot reach Redis at {describe(settings)} (set JOBS_REDIS_SENTINELS): {cause}")
    cause = _cause(error)
    return RedisUnreachable(f"cannot reach Redis at {describe(settings)} (set {URL_VARIABLE}): {cause}")


def _cause(error: BaseException) -> str:
    """The system's words for it (``Connection refused``) when an OS error is behind redis-py's, else its text."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):  # its errno is no system error: its own words say what failed
            return " ".join(str(seen).split())
        if isinstance(seen, OSError) and seen.errno:
            # asyncio's own text is "Connect call failed ('127.0.0.1', 1)"; name lookups have negative numbers
            return os.strerror(seen.errno) if seen.errno > 0 else str(seen.strerror)
        seen = seen.__cause__ or seen.__context__
    return " ".join(str(error).split()) or type(error).__name__


def _client_kwargs(settings: RedisSettings, timeout_s: float) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "db": settings.database, "username": settings.username, "password": settings.password,
        "socket_connect_timeout": timeout_s, "socket_timeout": timeout_s,
    }  # fmt: skip
    if settings.unix_socket_path:
        return {**kwargs, "unix_socket_path": settings.unix_socket_path}
    host = settings.host if isinstance(settings.host, str) else settings.host[0][0]
    if not settings.ssl:
        return {**kwargs, "host": host, "port": settings.port}
    # the same checks as the worker's and client's connections: certificate, host name, client certificate
    return {**kwargs, "host": host, "port": settings.port, "ssl": True,
            "ssl_cert_reqs": settings.ssl_cert_reqs, "ssl_ca_certs": settings.ssl_ca_certs,
            "ssl_check_hostname": settings.ssl_check_hostname, "ssl_certfile": settings.ssl_certfile,
            "ssl_keyfile": settings.ssl_keyfile}  # fmt: skip


def sync_client(settings: RedisSettings, timeout_s: float = CHECK_TIMEOUT_S) -> redis.Redis:
    """A plain (blocking) redis-py client for arq's connection settings, every call bounded by ``timeout_s``."""
    return redis.Redis(**_client_kwargs(settings, timeout_s))


def check_redis(settings: RedisSettings, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """PING once (no retries); raise :class:`RedisUnreachable` if Redis does not answer. With sentinels: ask
    them for the master, then PING it."""
    if settings.sentinel:
        from redis.sentinel import Sentinel

        from .pools import sentinel_password

        sentinels = Sentinel(  # type: ignore[no-untyped-call]
            list(settings.host),
            sentinel_kwargs={"password": sentinel_password(settings), "socket_timeout": timeout_s,
                             "socket_connect_timeout": timeout_s},
            **{key: value for key, value in _client_kwargs(settings, timeout_s).items() if key not in ("host", "port")},
        )  # fmt: skip
        try:
            sentinels.master_for(settings.sentinel_master).ping()  # type: ignore[no-untyped-call]
        except (redis.RedisError, OSError) as e:
            raise unreachable(settings, e) from None
        return
    client = sync_client(settings, timeout_s)
    try:
        client.ping()
    except (redis.RedisError, OSError) as e:
        raise unreachable(settings, e) from None
    finally:
        client.close()


async def check_redis_async(settings: RedisSettings, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """:func:`check_redis` for code already on an event loop."""
    if settings.sentinel:  # a few blocking calls to the sentinels, off the loop
        await asyncio.to_thread(check_redis, settings, timeout_s)
        return
    client = redis.asyncio.Redis(**_client_kwargs(settings, timeout_s))
    try:
        await client.ping()
    except (redis.RedisError, OSError, TimeoutError) as e:
        raise unreachable(settings, e) from None
    finally:
        await client.aclose()
