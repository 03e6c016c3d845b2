"""``@job``: turns ``async def f(ctx: JobContext, ...) -> R`` into a :class:`JobSpec` — or a plain ``def``, run
in the worker's thread pool, or with ``process=True`` in its process pool (``offload.py``).

A spec knows the job's wire name, how to validate its arguments (at enqueue and again in the worker, from a
pydantic model built from the signature) and its result (from the return annotation), and its timeout,
retry policy and result retention. ``spec.arq_function()`` is what any arq worker, ours or stock, runs.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Literal, ParamSpec, Protocol, TypeVar, cast, overload

from arq.typing import WorkerCoroutine
from arq.worker import Function, Retry
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo

from . import offload as offloading
from . import redact as redaction
from .constants import DEFAULT_JOB_TIMEOUT_S, PRIORITY_MAX
from .context import CTX_DEFAULT_TIMEOUT_S, JobContext
from .errors import ArgumentsInvalid, JobTimeout, ResultInvalid
from .limits import JobLimits, KeyOf, Limit, Rate, parse_rate
from .retry import Backoff

if TYPE_CHECKING:
    from .canvas import Signature

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
T = TypeVar("T")

_ANY: TypeAdapter[Any] = TypeAdapter(Any)
#: arq's own timeout is a backstop a little behind ours, so ours (which records why) fires first
_ARQ_TIMEOUT_MARGIN_S = 5.0


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """Per-call options: ``spec.options(job_id=…, defer_by=…)`` before enqueueing."""

    job_id: str | None = None
    defer_by: timedelta | float | None = None
    defer_until: datetime | None = None
    expires: timedelta | float | None = None
    queue_name: str | None = None
    #: a head start of ``priority`` times ``PRIORITY_STEP_MS`` (one minute) over jobs of priority 0 (README
    #: "Limits and priorities"); only for a job due now
    priority: int = 0

    def __post_init__(self) -> None:
        if self.defer_by is not None and self.defer_until is not None:
            raise ValueError("use either defer_by or defer_until, not both")
        _check_priority(self.priority)


def _check_priority(priority: object) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority must be a whole number from 0 to {PRIORITY_MAX}, not {priority!r}")


@dataclass(frozen=True, slots=True)
class JobCall(Generic[R]):
    """One validated call of a job (``spec.call(...)``), ready to enqueue."""

    spec: JobSpec[Any, R]
    #: the arguments by name, validated and in their JSON form
    kwargs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobSpec(Generic[P, R]):
    """A registered job: the function plus everything needed to enqueue, validate and run it."""

    #: the job's function: a coroutine function, or a plain one (``runs_in`` says where it runs)
    fn: Callable[Concatenate[JobContext, P], Any]
    name: str
    timeout_s: float | None
    retry: Backoff
    keep_result_s: float | None
    enqueue_options: EnqueueOptions = field(default_factory=EnqueueOptions)
    #: argument paths (``"password"``, ``"card.number"``) whose values are never shown (``redact.py``)
    redact: tuple[str, ...] = ()
    #: ``loop`` (a coroutine), ``thread`` (a plain function) or ``process`` (``@job(process=True)``)
    runs_in: Literal["loop", "thread", "process"] = "loop"
    #: concurrency and rate limits across the queue's workers (``limits.py``), None for an unlimited job
    limits: JobLimits | None = None
    _args_model: type[BaseModel] = field(init=False, repr=False, compare=False)
    _result: TypeAdapter[Any] = field(init=False, repr=False, compare=False)
    _params: tuple[str, ...] = field(init=False, repr=False, compare=False)
    #: the return annotation is None: a None result needs no validation
    _returns_none: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        model, params, result = _signature_models(self.fn, self.name)
        object.__setattr__(self, "_args_model", model)
        object.__setattr__(self, "_params", params)
        object.__setattr__(self, "_result", result)
        object.__setattr__(self, "_returns_none", result.core_schema["type"] == "none")
        for path in self.redact:
            if not path or path.split(".")[0] not in params:
                raise TypeError(f"job {self.name!r}: redact={path!r} names no parameter (it has {', '.join(params)})")
        redaction.declare(self.name, self.redact)
        key = None if self.limits is None else self.limits.key
        if isinstance(key, str) and key not in params:
            has = ", ".join(params)
            raise TypeError(f"job {self.name!r}: concurrency_key={key!r} names no parameter (it has {has})")
        if "\n" in self.name or self.name.startswith("default|"):
            raise TypeError(f"job name {self.name!r} may not contain a newline or begin with 'default|'")

    def limit_entry(self, kwargs: dict[str, Any]) -> str:
        """The side entry the enqueue writes for one job (``''`` for an unlimited job): see ``limits.py``."""
        if self.limits is None:
            return ""
        return self.limits.entry(self.name, kwargs, lambda values: self.validate_args((), values))

    def call(self, *args: P.args, **kwargs: P.kwargs) -> JobCall[R]:
        """Validated arguments for one run, for :meth:`JobClient.enqueue_many`."""
        return JobCall(self, self.encode_args(args, kwargs))

    @overload
    def s(self, *args: P.args, **kwargs: P.kwargs) -> Signature[R]: ...
    @overload
    def s(self: JobSpec[Concatenate[T, Q], R], *args: Q.args, **kwargs: Q.kwargs) -> Signature[R]: ...
    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A workflow step running this job (``canvas.py``): every argument for a first step; after another step,
        every argument but the first, which is the previous step's result. Validated at enqueue."""
        from .canvas import Signature

        return Signature(self, args, kwargs)

    @property
    def parameters(self) -> tuple[str, ...]:
        """The job's parameter names after ``ctx``, in order."""
        return self._params

    @property
    def argument_fields(self) -> dict[str, FieldInfo]:
        """The job's parameters as the fields of its argument model (type, default, constraints)."""
        return dict(self._args_model.model_fields)

    def options(self, **kwargs: Any) -> JobSpec[P, R]:
        """A copy of this spec that enqueues with these :class:`EnqueueOptions` (job_id, defer_by …)."""
        return replace(self, enqueue_options=replace(self.enqueue_options, **kwargs))

    # validation -----------------------------------------------------------------------------------------
    def validate_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> BaseModel:
        """Bind and validate call arguments; :class:`ArgumentsInvalid` says which and why."""
        if len(args) > len(self._params):
            raise ArgumentsInvalid(f"{self.name}() takes {len(self._params)} arguments but {len(args)} were given")
        values = dict(zip(self._params, args, strict=False))
        for key, value in kwargs.items():
            if key in values:
                raise ArgumentsInvalid(f"{self.name}() got multiple values for argument {key!r}")
            values[key] = value
        try:
            return self._args_model.model_validate(values)
        except ValidationError as e:
            raise ArgumentsInvalid(f"invalid arguments for {self.name}(): {_brief(e)}") from None

    def encode_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Validated arguments as JSON-ready keyword arguments (what goes on the wire).

        The arguments are validated in their JSON form, exactly as the worker will see them: a model
        instance changed after construction (or built with ``model_construct``) is checked too.
        """
        as_json = _ANY.dump_python(args, mode="json"), _ANY.dump_python(kwargs, mode="json")
        return self.validate_args(*as_json).model_dump(mode="json")

    def encode_result(self, value: Any) -> Any:
        if value is None and self._returns_none:
            return None  # ``-> None`` and None returned: validating and dumping it cannot change or refuse it
        try:
            return self._result.dump_python(self._result.validate_python(value), mode="json")
        except ValidationError as e:
            raise ResultInvalid(f"{self.name}() returned an invalid result: {_brief(e)}") from None

    def decode_result(self, value: Any) -> R:
        """The typed result from its JSON form (the client trusts Redis no more than the worker does)."""
        try:
            return typing.cast(R, self._result.validate_python(value))
        except ValidationError as e:
            raise ResultInvalid(f"stored result of {self.name}() is invalid: {_brief(e)}") from None

    # running --------------------------------------------------------------------------------------------
    async def invoke(
        self, ctx: JobContext, args: Sequence[Any], kwargs: dict[str, Any], offload: offloading.Offload | None = None
    ) -> Any:
        """Validate the arguments, run, validate the result; returns the result's JSON form. A sync or process job
        runs in ``offload``'s pools (the worker's), else in the process-wide ones."""
        if self.runs_in == "loop":
            # the cast's type is a string: a subscripted Callable would be built anew on every call
            fn = cast("Callable[..., Awaitable[Any]]", self.fn)
            return self.encode_result(await fn(ctx, **self._arguments(args, kwargs)))
        pools = offload or offloading.shared
        if self.runs_in == "thread":
            return self.encode_result(await pools.in_thread(self.fn, ctx, self._arguments(args, kwargs)))
        arguments = self.validate_args(tuple(args), kwargs)
        return await pools.in_process(self, ctx, arguments.model_dump(mode="json"))  # validated in the child

    def _arguments(self, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The validated arguments by name, to call the function with."""
        if not args and not kwargs and not self._params:
            return {}  # a job without parameters, called without arguments: nothing that could fail
        # the model's field values (what dict(model) copies, field by field, through its __iter__)
        return self.validate_args(tuple(args), kwargs).__dict__

    def timeout_error(self, timeout_s: float) -> JobTimeout:
        return JobTimeout(f"{self.name}() exceeded its timeout of {timeout_s:g}s")

    async def run(self, ctx: JobContext, args: Sequence[Any], kwargs: dict[str, Any], timeout_s: float) -> Any:
        """:meth:`invoke` under the timeout (our worker enforces timeouts itself, with one sweeper)."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self.invoke(ctx, args, kwargs)
        except TimeoutError:
            raise self.timeout_error(timeout_s) from None

    async def _arq_entry(self, arq_ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        """The coroutine arq calls: typed context, validation, timeout, and our retry policy."""
        ctx = JobContext.from_arq(arq_ctx, self.name, self.retry.max_tries)
        timeout_s = self.timeout_s or float(arq_ctx.get(CTX_DEFAULT_TIMEOUT_S, DEFAULT_JOB_TIMEOUT_S))
        try:
            return await self.run(ctx, args, kwargs, timeout_s)
        except Retry:
            raise
        except Exception as e:
            if self.retry.retries(e, ctx.job_try):
                delay_s = self.retry.delay_s(ctx.job_try)
                ctx.logger.info("try %d failed (%s: %s), retrying in %.2fs", ctx.job_try, type(e).__name__, e, delay_s)
                raise Retry(defer=delay_s) from e
            raise
        finally:
            await ctx.aclose()

    def arq_function(self) -> Function:
        """This job as an arq ``Function`` (what ``Worker(functions=…)`` takes, ours or stock)."""
        arq_timeout = None if self.timeout_s is None else self.timeout_s + _ARQ_TIMEOUT_MARGIN_S
        # arq's own max_tries only bounds explicit Retry; ordinary errors are decided by self.retry
        coroutine = cast(WorkerCoroutine, self._arq_entry)  # arq's Protocol names ctx; ours is positional
        return Function(self.name, coroutine, arq_timeout, self.keep_result_s, None, self.retry.max_tries)


def _brief(e: ValidationError) -> str:
    """One line per problem: ``location: message``."""
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors())


def _signature_models(fn: Callable[..., Any], name: str) -> tuple[type[BaseModel], tuple[str, ...], TypeAdapter[Any]]:
    """Argument model (everything after ``ctx``) and result adapter from the function's annotations."""
    hints = typing.get_type_hints(fn)
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        raise TypeError(f"job {name!r} must take a JobContext as its first parameter")
    fields: dict[str, Any] = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise TypeError(f"job {name!r}: parameter {p.name!r} must be a plain named parameter")
        if p.name not in hints:
            raise TypeError(f"job {name!r}: parameter {p.name!r} needs a type annotation")
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (hints[p.name], default)
    config = ConfigDict(extra="forbid")
    model = create_model(f"{name}_arguments", __config__=config, **fields)
    result = TypeAdapter(hints.get("return", Any))
    return model, tuple(fields), result


class _Decorator(Protocol):
    @overload
    def __call__(self, fn: Callable[Concatenate[JobContext, P], Awaitable[R]], /) -> JobSpec[P, R]: ...
    @overload
    def __call__(self, fn: Callable[Concatenate[JobContext, P], R], /) -> JobSpec[P, R]: ...


@overload
def job(fn: Callable[Concatenate[JobContext, P], Awaitable[R]], /) -> JobSpec[P, R]: ...


@overload
def job(fn: Callable[Concatenate[JobContext, P], R], /) -> JobSpec[P, R]: ...


@overload
def job(
    *,
    name: str | None = None,
    timeout_s: float | None = None,
    retry: Backoff | None = None,
    keep_result_s: float | None = None,
    redact: Sequence[str] = (),
    process: bool = False,
    priority: int = 0,
    max_concurrency: int | None = None,
    rate_limit: str | Rate | None = None,
    concurrency_key: KeyOf | None = None,
) -> _Decorator: ...


def job(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    timeout_s: float | None = None,
    retry: Backoff | None = None,
    keep_result_s: float | None = None,
    redact: Sequence[str] = (),
    process: bool = False,
    priority: int = 0,
    max_concurrency: int | None = None,
    rate_limit: str | Rate | None = None,
    concurrency_key: KeyOf | None = None,
) -> JobSpec[Any, Any] | _Decorator:
    """Declare a job. ``timeout_s=None`` takes the worker's default; ``retry`` defaults to ``Backoff()``;
    ``redact``: arguments (top-level names or dotted paths into models) whose values are never shown;
    ``priority``: the default priority of its runs (``spec.options(priority=…)`` per call).

    An ``async def`` runs on the worker's event loop; a plain ``def`` in the worker's thread pool; a plain ``def``
    with ``process=True`` in its process pool, for CPU-bound work (defined at a module's top level, so a fresh
    interpreter can import it by name). See ``offload.py`` for what a timeout or an abort does to each.

    ``max_concurrency``: at most this many runs at once across all workers of the queue; ``rate_limit``
    (``"100/m"``, ``"20/s"``, ``"5/h"``): at most that many starts, evenly spaced; ``concurrency_key`` (a
    parameter's name, or a callable given the validated arguments) makes both limits per key, e.g. one run per
    customer at a time. These are the defaults: ``hasten limits set`` changes them at run time (``limits.py``)."""
    if isinstance(redact, str):  # redact="password" would mask "p", "a", "s" …
        raise TypeError("redact takes a list of argument names, e.g. redact=['password']")
    options = EnqueueOptions(priority=priority)
    limits = _limits_of(max_concurrency, rate_limit, concurrency_key)

    def wrap(f: Callable[..., Any]) -> JobSpec[Any, Any]:
        runs_in: Literal["loop", "thread", "process"] = "loop"
        if inspect.iscoroutinefunction(f):
            if process:
                raise TypeError(f"job {f.__name__!r}: process=True runs a plain def function, not an async one")
        elif not inspect.isfunction(f) or f.__name__ == "<lambda>":
            raise TypeError(f"job {f!r} must be a named function: async def, or def for a sync job")
        elif process:
            if "." in f.__qualname__:  # nested in a function or a class: a fresh interpreter cannot name it
                raise TypeError(f"job {f.__name__!r}: process=True needs a function defined at a module's top level")
            runs_in = "process"
        else:
            runs_in = "thread"
        return JobSpec(f, name or f.__name__, timeout_s, retry or Backoff(), keep_result_s, options,
                       redact=tuple(redact), runs_in=runs_in, limits=limits)  # fmt: skip

    return cast(_Decorator, wrap) if fn is None else wrap(fn)


def _limits_of(max_concurrency: int | None, rate_limit: str | Rate | None, key: KeyOf | None) -> JobLimits | None:
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int | None):
        raise TypeError(f"max_concurrency takes a whole number, got {max_concurrency!r}")
    rate = parse_rate(rate_limit) if isinstance(rate_limit, str) else rate_limit
    if max_concurrency is None and rate is None:
        if key is not None:
            raise TypeError("concurrency_key needs a limit to apply to: max_concurrency=… or rate_limit=…")
        return None
    if key is not None and not (isinstance(key, str) or callable(key)):
        raise TypeError(f"concurrency_key takes a parameter's name or a callable, got {key!r}")
    return JobLimits(Limit(max_concurrency, rate), key)
