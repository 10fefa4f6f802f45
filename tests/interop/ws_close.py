"""Closes hostwatch's WebSockets the way third-party clients do, with Python's `websockets`.

Run by tests/tests/interop.rs as `python3 ws_close.py WS_ADDR AGENT_TOKEN`. Prints one JSON
object: for each case, the close code the collector sent back (null when it sent no close
frame, which `websockets` reports as 1006, abnormal closure).
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

# Every wait is bounded: a collector that never answers makes the case report null, not hang.
CLOSE_TIMEOUT = 5


def received(ws):
    """The code of the close frame the server sent, or None if it sent none."""
    rcvd = ws.protocol.close_rcvd
    return rcvd.code if rcvd is not None else None


async def client_closes(uri, headers=None):
    async with connect(
        uri, additional_headers=headers, proxy=None, close_timeout=CLOSE_TIMEOUT
    ) as ws:
        await ws.close(1000, "done")
        return received(ws)


async def client_sends(uri, message, text):
    async with connect(uri, proxy=None, close_timeout=CLOSE_TIMEOUT) as ws:
        await ws.send(message, text=text)
        try:
            # The collector answers with a close frame; reading ends when it does.
            await asyncio.wait_for(ws.recv(), CLOSE_TIMEOUT * 2)
            while True:
                await asyncio.wait_for(ws.recv(), CLOSE_TIMEOUT * 2)
        except (ConnectionClosed, asyncio.TimeoutError):
            pass
        return received(ws)


async def main():
    addr, token = sys.argv[1], sys.argv[2]
    live = f"ws://{addr}/live"
    results = {
        "live_client_close": await client_closes(live),
        "live_text": await client_sends(live, "hello", True),
        "live_invalid_utf8": await client_sends(live, b"\xff\xfe", True),
        "ingest_client_close": await client_closes(
            f"ws://{addr}/ingest", {"Authorization": f"Bearer {token}"}
        ),
    }
    print(json.dumps(results))


asyncio.run(main())
