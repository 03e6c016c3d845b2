"""A workflow (``canvas.py``) laid out as numbered steps: who feeds whom, with arguments validated.

Steps are numbered in the order they appear (a chain's parts left to right, a group's members in order). Step *i*
waits for its ``inputs`` (the steps before it), takes their results as its first parameter — one value after a
step, the list of values after a group — and is followed by its ``successors``. The workflow's result is that of its
``final`` steps: one value, or a list when it ends in a group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from .canvas import Chain, Flow, Group, Signature
from .errors import ArgumentsInvalid
from .job import JobSpec

__all__ = ["Plan", "Step", "plan"]

_ANY: TypeAdapter[Any] = TypeAdapter(Any)


@dataclass(slots=True)
class Step:
    index: int
    spec: JobSpec[Any, Any]
    #: the arguments given in ``.s(...)``, validated, in their JSON form (the first one excepted after a step)
    kwargs: dict[str, Any]
    #: the steps whose results it takes, in order (none for a first step)
    inputs: tuple[int, ...] = ()
    #: it takes a list (it follows a group), else one value
    takes_list: bool = False
    #: the parameter the input goes in
    input_arg: str | None = None
    successors: list[int] = field(default_factory=list)

    def wire(self) -> dict[str, Any] | None:
        """What the worker needs to fill in the input (inside the job's payload), None for a first step."""
        if not self.inputs:
            return None
        return {"arg": self.input_arg, "from": list(self.inputs), "list": self.takes_list}


@dataclass(slots=True)
class Plan:
    steps: list[Step]
    final: tuple[int, ...]
    #: the workflow ends in a group: its result is the list of the final steps' results
    final_is_list: bool


def plan(flow: Flow[Any]) -> Plan:
    """Lay out ``flow``; :class:`ArgumentsInvalid` names a step whose arguments do not fit its job."""
    if not isinstance(flow, Flow):
        raise TypeError(f"enqueue_workflow() takes a chain, group or step, got {type(flow).__name__}")
    steps: list[Step] = []
    final, final_is_list = _lay_out(flow, (), False, steps)
    return Plan(steps, final, final_is_list)


def _lay_out(
    flow: Flow[Any], inputs: tuple[int, ...], takes_list: bool, steps: list[Step]
) -> tuple[tuple[int, ...], bool]:
    """Add ``flow``'s steps after ``inputs``; returns its last steps and whether they make a list."""
    if isinstance(flow, Signature):
        step = Step(len(steps), flow.spec, {}, inputs, takes_list)
        if inputs:
            step.input_arg, step.kwargs = _encode_after_input(flow)
        else:
            step.kwargs = flow.spec.encode_args(flow.args, flow.kwargs)
        steps.append(step)
        for i in inputs:
            steps[i].successors.append(step.index)
        return (step.index,), False
    if isinstance(flow, Chain):
        for part in flow.parts:
            inputs, takes_list = _lay_out(part, inputs, takes_list, steps)
        return inputs, takes_list
    if isinstance(flow, Group):
        ends: list[int] = []
        for member in flow.members:
            ends += _lay_out(member, inputs, takes_list, steps)[0]
        return tuple(ends), True
    raise TypeError(f"not a workflow part: {type(flow).__name__}")


def _encode_after_input(step: Signature[Any]) -> tuple[str, dict[str, Any]]:
    """The parameter the previous result goes in, and the other arguments validated one by one (the input is
    validated with the rest when the step runs)."""
    spec, name = step.spec, step.spec.name
    if not spec.parameters:
        raise ArgumentsInvalid(f"{name}() takes no argument, so it cannot take the result of the step before it")
    first, rest = spec.parameters[0], spec.parameters[1:]
    values = _bind(step, first, rest)
    fields = spec.argument_fields
    encoded: dict[str, Any] = {}
    for param in rest:
        if param in values:
            encoded[param] = _encode_one(name, param, fields[param], values[param])
        elif fields[param].is_required():
            raise ArgumentsInvalid(f"invalid arguments for {name}(): {param}: Field required")
    return first, encoded


def _bind(step: Signature[Any], first: str, rest: tuple[str, ...]) -> dict[str, Any]:
    """The arguments given, by parameter name, in their JSON form."""
    name = step.spec.name
    if first in step.kwargs:
        raise ArgumentsInvalid(f"{name}(): {first!r} is the previous step's result; give only the other arguments")
    if len(step.args) > len(rest):
        raise ArgumentsInvalid(
            f"{name}() takes {len(rest)} arguments besides the previous step's result, but {len(step.args)} were given"
        )
    values = dict(zip(rest, _ANY.dump_python(step.args, mode="json"), strict=False))
    for key, value in _ANY.dump_python(step.kwargs, mode="json").items():
        if key in values:
            raise ArgumentsInvalid(f"{name}() got multiple values for argument {key!r}")
        if key not in rest:
            raise ArgumentsInvalid(f"{name}() got an unexpected argument {key!r}")
        values[key] = value
    return values


def _encode_one(name: str, param: str, info: FieldInfo, value: Any) -> Any:
    hint: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
    adapter: TypeAdapter[Any] = TypeAdapter(hint)
    try:
        return adapter.dump_python(adapter.validate_python(value), mode="json")
    except ValidationError as e:
        problems = "; ".join(err["msg"] for err in e.errors())
        raise ArgumentsInvalid(f"invalid arguments for {name}(): {param}: {problems}") from None
