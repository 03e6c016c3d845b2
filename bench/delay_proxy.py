"""A loopback TCP proxy that delays every byte by a fixed time each way: ``python -m bench.delay_proxy <listen port>
<target port> <delay ms>``. Redis behind it looks ``2 × delay`` away (a round trip across a data centre, or to a
managed Redis). Bytes keep their order; the delay is added to what loopback already takes. Runs until killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

import uvloop


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            if (wait_s := due - time.monotonic()) > 0:
                await asyncio.sleep(wait_s)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(deliver())
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay_s, data))
    queue.put_nowait((0.0, b""))
    with contextlib.suppress(OSError):
        await sender


async def main(listen_port: int, target_port: int, delay_s: float) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(_pipe(client_reader, server_writer, delay_s), _pipe(server_reader, client_writer, delay_s))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000))
