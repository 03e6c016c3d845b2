"""Where a queue's keys live: one hash slot per queue.

A Lua script or a transaction may touch keys of one Redis Cluster slot only, so every key a queue's work touches
carries the queue's hash tag. arq's queue key is the queue's name: a queue named with a tag (``{orders}``) hashes by
it, and so does every key named ``<prefix><queue name>`` (wake-up list, idle set, dead letters, worker set, stats).
Keys named by an id carry the tag because the ids do: job ids and worker ids made for a tagged queue begin with its
tag (:func:`tagged_id`), so ``arq:job:{orders}3f2a…``, ``arq:in-progress:…``, ``arq:retry:…``, ``arq:result:…``,
a worker's hand-off list and heartbeat hash with the queue. An untagged queue's names are what they always were.

arq's one abort set ``arq:abort`` cannot share a slot with every queue: on a cluster each queue has its own
(:func:`abort_key`); a single node keeps arq's, for arq's ``Job.abort``.
"""

from __future__ import annotations

from . import constants as k

__all__ = ["abort_key", "hash_tag", "tagged_id", "without_tag"]


def hash_tag(name: str) -> str:
    """The hash tag Redis Cluster hashes ``name`` by, braces included (``{orders}`` of ``eu{orders}``); ``''`` when
    the whole name is hashed: no ``{``, no ``}`` after it, or nothing between them."""
    start = name.find("{")
    if start < 0:
        return ""
    end = name.find("}", start + 1)
    if end <= start + 1:
        return ""
    return name[start : end + 1]


def tagged_id(queue_name: str, raw_id: str) -> str:
    """``raw_id`` made an id of ``queue_name``: prefixed with its hash tag, unless it has none or the id already
    begins with it (tagging twice changes nothing)."""
    tag = hash_tag(queue_name)
    if not tag or raw_id.startswith(tag):
        return raw_id
    return tag + raw_id


def without_tag(raw_id: str) -> str:
    """An id without the hash tag it begins with, if any (``cron:…`` of ``{orders}cron:…``)."""
    if raw_id.startswith("{"):
        end = raw_id.find("}")
        if end > 1:
            return raw_id[end + 1 :]
    return raw_id


def abort_key(queue_name: str, cluster: bool) -> str:
    """The abort set of ``queue_name``: arq's own on a single node, the queue's own on a cluster."""
    return k.ABORT_KEY_PREFIX + queue_name if cluster else k.abort_jobs_ss
