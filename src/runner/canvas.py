"""What a workflow is made of: a step (``spec.s(...)``), :func:`chain`, :func:`group` and :func:`chord`.

These are plain values: nothing is validated against Redis or written until ``JobClient.enqueue_workflow``.

- A **step** ``spec.s(*args, **kwargs)`` is one run of a job. A step after another takes the previous result as the
  job's **first parameter** (after ``ctx``); its ``.s(...)`` gives the others. The first step of a workflow (or a
  member of a group that opens one) takes nothing from before: its ``.s(...)`` gives every argument.
- :func:`chain` runs its parts one after another; its result is the last part's.
- :func:`group` runs its members side by side; its result is the list of their results, in the members' order. A
  step after a group takes that list.
- :func:`chord` is ``chain(group, callback)``: the callback runs once, after every member finished.

Typing: mypy checks a step's arguments (all of them, or all but the first) against the job's signature, and carries
the result type of the last part to ``WorkflowHandle.result()``; that a result fits the next job's first parameter is
checked at run time, by the next job's argument validation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

if TYPE_CHECKING:
    from .job import JobSpec

__all__ = ["Chain", "Flow", "Group", "Signature", "chain", "chord", "group"]

R = TypeVar("R")
#: a part's result type: a part giving ``bool`` is a part giving ``int``, so a group may mix them (as ``object``)
R_co = TypeVar("R_co", covariant=True)
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")


class Flow(Generic[R_co]):
    """A part of a workflow whose result is ``R_co``."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Signature(Flow[R_co]):
    """One run of a job, with the arguments given so far (``spec.s(...)``)."""

    spec: JobSpec[Any, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __repr__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{key}={value!r}" for key, value in self.kwargs.items()]
        return f"{self.spec.name}.s({', '.join(shown)})"


@dataclass(frozen=True, slots=True)
class Chain(Flow[R_co]):
    """Parts run one after another, each given the previous one's result."""

    parts: tuple[Flow[Any], ...]


@dataclass(frozen=True, slots=True)
class Group(Flow[list[R_co]]):
    """Members run side by side; the result is the list of theirs, in order."""

    members: tuple[Flow[R_co], ...]


def _ends_single(flow: Flow[Any]) -> bool:
    if isinstance(flow, Signature):
        return True
    return isinstance(flow, Chain) and _ends_single(flow.parts[-1])


def _require_flow(part: object, where: str) -> Flow[Any]:
    if not isinstance(part, Flow):
        hint = " (make a step with spec.s(...))" if hasattr(part, "s") else ""
        raise TypeError(f"{where} takes steps, chains and groups, got {type(part).__name__}{hint}")
    return part


@overload
def chain(a: Flow[R], /) -> Chain[R]: ...
@overload
def chain(a: Flow[A], b: Flow[R], /) -> Chain[R]: ...
@overload
def chain(a: Flow[A], b: Flow[B], c: Flow[R], /) -> Chain[R]: ...
@overload
def chain(a: Flow[A], b: Flow[B], c: Flow[C], d: Flow[R], /) -> Chain[R]: ...
@overload
def chain(a: Flow[A], b: Flow[B], c: Flow[C], d: Flow[D], e: Flow[R], /) -> Chain[R]: ...
@overload
def chain(a: Flow[A], b: Flow[B], c: Flow[C], d: Flow[D], e: Flow[E], /, *rest: Flow[Any]) -> Chain[Any]: ...
def chain(*parts: Flow[Any]) -> Chain[Any]:
    """Run ``parts`` one after another, each given the previous one's result; the result is the last one's."""
    if not parts:
        raise ValueError("chain() needs at least one step")
    flat: list[Flow[Any]] = []
    for part in parts:
        part = _require_flow(part, "chain()")
        flat.extend(part.parts if isinstance(part, Chain) else (part,))
    return Chain(tuple(flat))


def group(members: Iterable[Flow[R]]) -> Group[R]:
    """Run ``members`` side by side; the result is the list of their results, in order."""
    if isinstance(members, Flow):
        raise TypeError("group() takes a list of steps: group([a.s(), b.s()])")
    parts = tuple(_require_flow(member, "group()") for member in members)
    if not parts:
        raise ValueError("group() needs at least one member")
    for member in parts:
        if not _ends_single(member):
            raise TypeError(
                f"a member of a group must end in one step, not a group ({member!r}): flatten them into one"
            )
    return Group(parts)


def chord(header: Group[A], callback: Flow[R]) -> Chain[R]:
    """Run ``header``'s members side by side, then ``callback`` once with the list of their results."""
    if not isinstance(header, Group):
        raise TypeError(f"chord() takes a group first (group([...])), got {type(header).__name__}")
    return chain(header, callback)
