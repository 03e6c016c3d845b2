"""WorkerSettings for the import test (``tests/test_worker_imports.py``): the template's own (``src/settings.py``:
its jobs, cron table and settings), plus an ``on_startup`` that notes which modules the started worker process
holds."""

from __future__ import annotations

import sys
from typing import Any

import orjson

from src import settings

#: where the started worker writes the names of its loaded modules
MODULES_KEY = "test:worker-modules"


async def _note_modules(ctx: dict[Any, Any]) -> None:
    await ctx["redis"].set(MODULES_KEY, orjson.dumps(sorted(sys.modules)))


class WorkerSettings(settings.WorkerSettings):
    on_startup = _note_modules
