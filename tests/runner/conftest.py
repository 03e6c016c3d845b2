"""The engine's async tests run on both event loops a worker meets: asyncio's own (an application that embeds the
client or the worker) and uvloop (what ``arq src.settings.WorkerSettings`` and ``hasten worker`` run on)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
