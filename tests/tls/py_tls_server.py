#!/usr/bin/python3
"""TLS tests: a Python websockets (Debian's 10.4) echo server over wss://, for
`kaze client` to talk to.

    py_tls_server.py CERT KEY

Listens on 127.0.0.1, on a port the system picks, and prints that port as the
first line. Then, for every connection, one line
"conn sni=NAME ext=EXTENSIONS" (NAME: the server name the client sent in its
TLS hello, or - for none; EXTENSIONS: what was agreed, or - for none). Echoes
every message, text as text and binary as binary. SIGTERM stops it.
"""
import asyncio
import signal
import ssl
import sys

import websockets

SNI = {}  # id of the SSLObject -> the name it was asked for


def sni_callback(ssl_obj, name, _ctx):
    SNI[id(ssl_obj)] = name


async def echo(ws, _path=None):
    ssl_obj = ws.transport.get_extra_info("ssl_object")
    name = SNI.pop(id(ssl_obj), None) or "-"
    ext = ",".join(e.name for e in ws.extensions) or "-"
    print(f"conn sni={name} ext={ext}", flush=True)
    async for message in ws:
        await ws.send(message)


async def main(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = sni_callback
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with websockets.serve(echo, "127.0.0.1", 0, ssl=ctx, max_size=None, max_queue=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await stop


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: py_tls_server.py CERT KEY")
    asyncio.run(main(sys.argv[1], sys.argv[2]))
