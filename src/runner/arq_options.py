"""arq's ``Worker`` options under our worker: each one is honoured, or refused at start with what to use instead.

An arq app's ``WorkerSettings`` must behave as under arq or fail loudly: an option accepted and then ignored is
how ``on_job_start`` and ``cron_jobs`` used to go unnoticed. The README's "arq options" table lists the same.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import arq.worker
from arq.worker import Function

from .arq_cron import entries_from_arq
from .codec import Codec, SerializerPair
from .cron import CronEntry, check_table
from .errors import SettingsInvalid
from .hooks import JobHooks
from .job import JobSpec

#: arq options we do not honour: (the value that is arq's default and means "not used", what to use instead)
REFUSED: dict[str, tuple[Any, str]] = {
    "job_completion_wait": (
        0,
        "use shutdown_grace_s: on SIGTERM running jobs get that long to finish, no new job is taken",
    ),
    "queue_read_limit": (
        None,
        "not needed: jobs are claimed in batches of at most the free slots (max_jobs bounds them)",
    ),
}


@dataclass(frozen=True, slots=True)
class ArqSetup:
    """What the worker takes from arq's options."""

    functions: list[Function]
    #: ours, then arq's ``cron_jobs`` as entries (``arq_cron.py``)
    cron_entries: list[CronEntry]
    codec: Codec
    hooks: JobHooks


def arq_setup(
    functions: Sequence[JobSpec[Any, Any] | Function | str | Callable[..., Any]],
    cron_entries: Sequence[CronEntry],
    codec: Codec | None,
    job_serializer: Any,
    job_deserializer: Any,
    arq_kwargs: dict[str, Any],
) -> ArqSetup:
    """Check arq's options (refusing those we do not honour) and turn them into the worker's parts."""
    refuse_unsupported(arq_kwargs)
    converted = arq_functions(functions)
    arq_cron = entries_from_arq(arq_kwargs.get("cron_jobs"), arq_kwargs.get("timezone"))
    entries = [*cron_entries, *arq_cron]
    check_table(entries, {f.name for f in converted} | {e.job.name for e in arq_cron})
    hooks = JobHooks(arq_kwargs.get("on_job_start"), arq_kwargs.get("on_job_end"), arq_kwargs.get("after_job_end"))
    return ArqSetup(converted, entries, pick_codec(codec, job_serializer, job_deserializer), hooks)


def refuse_unsupported(options: dict[str, Any]) -> None:
    """:class:`SettingsInvalid` naming every arq option given that our worker does not honour."""
    problems = [
        f"{name}={options[name]!r}: {instead}"
        for name, (unused, instead) in REFUSED.items()
        if name in options and options[name] != unused and not (unused is None and not options[name])
    ]
    if problems:
        raise SettingsInvalid("arq options not supported by this worker: " + "; ".join(problems))


def arq_functions(functions: Sequence[JobSpec[Any, Any] | Function | str | Callable[..., Any]]) -> list[Function]:
    """arq ``Function`` objects for what ``functions=`` may hold under arq — a plain ``async def``, ``func(...)``,
    a dotted path — or under us, a ``@job`` spec. Names must be unique."""
    converted = [f.arq_function() if isinstance(f, JobSpec) else arq.worker.func(f) for f in functions]
    names = [f.name for f in converted]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"job names must be unique, registered twice: {', '.join(duplicates)}")
    return converted


def pick_codec(codec: Codec | None, job_serializer: Any, job_deserializer: Any) -> Codec:
    """Our JSON codec unless the user gave arq's serializer pair (e.g. msgpack); both halves or neither."""
    if job_serializer is None and job_deserializer is None:
        return codec or Codec()
    if job_serializer is None or job_deserializer is None:
        raise SettingsInvalid("give job_serializer and job_deserializer together (or neither: JSON)")
    if codec is not None:
        raise SettingsInvalid("give either codec or job_serializer/job_deserializer, not both")
    return SerializerPair(job_serializer, job_deserializer)


def with_arq_signature(cls: type[Any]) -> None:
    """Spell arq's parameter names into ``cls``'s signature: code that builds workers the way arq's
    ``get_kwargs`` does (``inspect.signature(Worker).parameters``) must see ``redis_settings``, ``burst`` …"""
    ours = inspect.signature(cls.__init__)
    theirs = inspect.signature(arq.worker.Worker.__init__)
    params = [p for p in ours.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    have = {p.name for p in params}
    params += [p for p in theirs.parameters.values() if p.name not in have and p.kind is p.KEYWORD_ONLY]
    cls.__signature__ = ours.replace(parameters=params[1:])  # without self
