#!/usr/bin/env python3
"""Reference broadcaster on Python's `websockets` package, for the collector benchmark's
`fanout-ref` phase (BENCHMARKS.md): publishers connect to /publish and send JSON sample events
as text messages; every event goes to every viewer connected to /live.

    python3 broadcaster.py [PORT]     # PORT 0 (the default) picks one; the port is printed

Fairness: like hostwatch's hub (SUBSCRIBER_QUEUE_BYTES, 1 MiB), each viewer has a bounded
queue of events not yet written; a viewer that lets it pass 1 MiB is dropped with close code
1008 `lagged` instead of buffering without bound. Events are parsed once (a bad one closes its
publisher with 1007) and forwarded as received.
"""

import asyncio
import json
import sys
from http import HTTPStatus

from websockets.asyncio.server import serve

QUEUE_BYTES = 1024 * 1024


class Viewer:
    def __init__(self, ws):
        self.ws = ws
        self.queue = asyncio.Queue()
        self.queued_bytes = 0
        self.lagged = False


viewers = set()


async def publisher(ws):
    async for message in ws:
        try:
            event = json.loads(message) if isinstance(message, str) else None
        except ValueError:
            event = None
        if not isinstance(event, dict):
            await ws.close(1007, "send JSON objects as text messages")
            return
        for viewer in list(viewers):
            if viewer.queued_bytes + len(message) > QUEUE_BYTES:
                viewers.discard(viewer)
                viewer.lagged = True
                viewer.queue.put_nowait(None)
                continue
            viewer.queued_bytes += len(message)
            viewer.queue.put_nowait(message)


async def viewer(ws):
    me = Viewer(ws)
    viewers.add(me)
    # Pings are answered by the library; anything else from a viewer ends it.
    reader = asyncio.ensure_future(ws.recv())
    try:
        while True:
            message = await me.queue.get()
            if reader.done():
                await ws.close(1003, "/live is one-way")
                return
            if message is None:
                await ws.close(1008, "lagged")
                return
            me.queued_bytes -= len(message)
            await ws.send(message)
    finally:
        viewers.discard(me)
        reader.cancel()


async def handler(ws):
    await (publisher if ws.request.path.split("?")[0] == "/publish" else viewer)(ws)


def route(connection, request):
    if request.path.split("?")[0] not in ("/publish", "/live"):
        return connection.respond(HTTPStatus.NOT_FOUND, "use /publish or /live\n")
    return None


async def main():
    try:
        port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        sys.exit(f"usage: broadcaster.py [PORT]: {sys.argv[1]} is not a port")
    async with serve(
        handler, "127.0.0.1", port, process_request=route, compression=None, max_size=1 << 20
    ) as server:
        print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
