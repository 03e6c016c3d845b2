"""Redis URLs: ``redis://``, ``rediss://`` (TLS) and ``unix://`` (a socket path), checked, read and shown.

arq's ``RedisSettings.from_dsn`` reads the same three schemes but neither checks them nor unquotes
credentials, and pydantic's ``RedisDsn`` refuses ``unix://``; this module is the one place that does both.
A URL is shown to people only through :func:`redacted`: passwords never reach a terminal or a log.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from arq.connections import RedisSettings

SCHEMES = ("redis", "rediss", "unix")


def check(url: str) -> str:
    """``url`` if it is a Redis URL we can connect to; otherwise ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"a Redis URL starts with redis://, rediss:// or unix://, got {redacted(url)!r}")
    if parts.scheme == "unix":
        if not parts.path.startswith("/"):
            raise ValueError(f"a unix:// Redis URL names the socket's absolute path (unix:///path/to/redis.sock), "
                             f"got {redacted(url)!r}")  # fmt: skip
    elif parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ValueError(f"the path of a Redis URL is the database number (redis://host:6379/0), got {redacted(url)!r}")
    try:
        _database(url)
        parts.port  # noqa: B018  (raises on a port out of range)
    except ValueError as e:
        raise ValueError(f"bad Redis URL {redacted(url)!r}: {e}") from None
    return url


def redis_settings(url: str) -> RedisSettings:
    """arq's connection settings for a checked URL (credentials unquoted, ``?db=`` honoured)."""
    parts = urlsplit(url)
    unix = parts.scheme == "unix"
    return RedisSettings(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        unix_socket_path=parts.path if unix else None,
        database=_database(url),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme == "rediss",
    )


def redacted(url: str) -> str:
    """The URL with its password replaced by ``***`` (the user name stays: it helps, and is no secret)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def describe(settings: RedisSettings) -> str:
    """A URL for arq's connection settings, password hidden: what error messages name."""
    user = settings.username or ""
    auth = f"{user}:***@" if settings.password else (f"{user}@" if user else "")
    if settings.unix_socket_path:
        db = f"?db={settings.database}" if settings.database else ""
        return f"unix://{auth}{settings.unix_socket_path}{db}"
    if settings.sentinel:  # not a URL anyone connects to: the master's name, and the sentinels asked for it
        addresses: list[tuple[str, int]] = list(settings.host)  # type: ignore[arg-type]  # a list in sentinel mode
        sentinels = ",".join(f"{host}:{port}" for host, port in addresses)
        return f"master {settings.sentinel_master!r} of the sentinels {sentinels}"
    scheme = "rediss" if settings.ssl else "redis"
    if getattr(settings, "cluster", False):
        return f"the Redis Cluster of node {scheme}://{auth}{settings.host}:{settings.port}"
    return f"{scheme}://{auth}{settings.host}:{settings.port}/{settings.database}"


def _database(url: str) -> int:
    parts = urlsplit(url)
    query_db = parse_qs(parts.query).get("db")
    if query_db:
        return int(query_db[0])
    if parts.scheme != "unix" and parts.path.strip("/"):
        return int(parts.path.strip("/"))
    return 0
