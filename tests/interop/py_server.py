#!/usr/bin/python3
"""Python websockets echo server for the client-direction interop test:
libkaze's client role (kaze bench) talks to it, with and without
permessage-deflate (websockets negotiates it by default).

    py_server.py PORT   prints PORT once listening; SIGTERM stops it
"""
import asyncio
import signal
import sys

import websockets


async def echo(ws, _path=None):
    async for message in ws:
        await ws.send(message)


async def main(port):
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with websockets.serve(echo, "127.0.0.1", port, max_size=None, max_queue=None):
        print(port, flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
