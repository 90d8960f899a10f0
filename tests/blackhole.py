"""A TCP proxy for fault tests that can black-hole its traffic, like a network partition.

`partition()` stops forwarding and stops reading in both directions, on every connection
and on new ones: bytes vanish, no reset and no FIN reach either side, so a client waits as
it would for a host that dropped off the network (no firewall or root needed). `heal()`
resumes, and what was held back is delivered, as TCP would after retransmitting.

It runs an asyncio loop in a daemon thread of the test process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class BlackholeProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._open: asyncio.Event | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # --- control, from the test's thread ---------------------------------------------------
    def start(self) -> BlackholeProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=5)
        return self

    def partition(self) -> None:
        self._loop.call_soon_threadsafe(self._open.clear)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._open.set)

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    # --- the loop ------------------------------------------------------------------------
    async def _start(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, client_r, client_w) -> None:
        await self._open.wait()  # a partitioned host does not answer new connections either
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()  # the target is down (refused): so is the proxied address
            return
        await asyncio.gather(
            self._pump(client_r, server_w), self._pump(server_r, client_w), return_exceptions=True
        )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._open.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self._open.wait()  # read just before the partition: held back
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
