#!/usr/bin/python3
"""Servers with particular behaviours for the `kaze client` tests
(tests/interop/client_cli.sh and reconnect_cli.sh).

    py_special_server.py PORT [RAWPORT]

PORT serves WebSocket (Python websockets 10.4) on 127.0.0.1 and, when the
host has it, ::1. What a connection gets depends on its path:

  /                  echo
  /first-only        echoes the first message only, ignores the rest
  /double            echoes every message twice
  /silent            never sends anything
  /info              answers every message with one text line:
                       type=text|binary proto=<chosen subprotocol or ->
                       offered=<subprotocols offered, "a,b", or ->
                       ext=<negotiated extensions or -> host=<Host header>
                       path=<request path and query> msg=<the message>
  /auth              refused (403) unless Authorization is "Bearer x" and
                     Cookie holds a=b; answers every message with
                     "auth=<Authorization> cookie=<Cookie> custom=<X-Custom>
                     msg=<message>"
  /refuse            refused: 403
  /close/CODE        closes with CODE once the first message has arrived
                     (CODE 1005: a close frame without a code)
  /drive/CODE        for `kaze client --echo`: sends a fixed series of text
                     and binary messages, checks that each comes back
                     unchanged (content and type) and then closes with CODE
                     (1005: without a code), or with 4001 on a mismatch
  anything else      refused: 404

Prints "open PATH" on stdout for each accepted connection and
"close PATH CODE" when it has ended, CODE being the code of the close frame
the client sent (1005: a frame without a code; 1006: none at all).

RAWPORT (optional) speaks plain asyncio on 127.0.0.1: it reads one request
head and gives a broken answer, chosen by the path:

  /bad-accept    101 with a wrong Sec-WebSocket-Accept
  /bad-proto     101, right accept, Sec-WebSocket-Protocol nobody offered
  /bad-ext       101, right accept, Sec-WebSocket-Extensions: x-unknown
  /not-101       200 OK with a small body
  /garbage       a line that is not HTTP
  /hangup        closes without answering

Prints PORT once everything listens; SIGTERM stops it (open connections
are closed with 1001).
"""
import asyncio
import base64
import hashlib
import signal
from http import HTTPStatus
import sys

import websockets
from websockets.frames import Close

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def drive_series():
    """Messages /drive sends: (payload, is_binary)."""
    return [
        ("hello", False),
        ("", False),
        ("héllo wörld ✓ 𝄞 日本語", False),
        (bytes(range(256)), True),
        (b"", True),
        ("x" * 100_000, False),
        (bytes(i % 251 for i in range(70_000)), True),
        ("last", False),
    ]


async def close_with(ws, code):
    if code == 1005:
        await ws.write_close_frame(Close(1005, ""), b"")
        await ws.wait_closed()
    else:
        await ws.close(code, "closing as asked")


def header(ws, name):
    """All values of a request header, joined with ", " ("-" when absent)."""
    values = ws.request_headers.get_all(name)
    return ", ".join(values) if values else "-"


def offered(ws):
    """The subprotocols offered, in order, as "a,b" ("-" when none)."""
    tokens = []
    for v in ws.request_headers.get_all("Sec-WebSocket-Protocol"):
        tokens += [t.strip() for t in v.split(",") if t.strip()]
    return ",".join(tokens) or "-"


async def handler(ws, path):
    print("open", path, flush=True)
    try:
        await serve_path(ws, path)
    except websockets.ConnectionClosed:
        pass
    finally:
        await ws.wait_closed()
        # The code of the close frame received from the client (1006: none).
        print("close", path, ws.close_code, flush=True)


async def serve_path(ws, path):
    route = path.split("?", 1)[0]
    if route == "/":
        async for m in ws:
            await ws.send(m)
    elif route == "/first-only":
        first = True
        async for m in ws:
            if first:
                await ws.send(m)
                first = False
    elif route == "/double":
        async for m in ws:
            await ws.send(m)
            await ws.send(m)
    elif route == "/silent":
        async for _ in ws:
            pass
    elif route == "/info":
        async for m in ws:
            kind = "binary" if isinstance(m, bytes) else "text"
            if isinstance(m, bytes):
                m = m.decode("utf-8", "replace")
            ext = ",".join(e.name for e in ws.extensions) or "-"
            await ws.send(
                f"type={kind} proto={ws.subprotocol or '-'} "
                f"offered={offered(ws)} ext={ext} "
                f"host={header(ws, 'Host')} path={path} msg={m}"
            )
    elif route == "/auth":
        async for m in ws:
            if isinstance(m, bytes):
                m = m.decode("utf-8", "replace")
            await ws.send(
                f"auth={header(ws, 'Authorization')} cookie={header(ws, 'Cookie')} "
                f"custom={header(ws, 'X-Custom')} msg={m}"
            )
    elif route.startswith("/close/"):
        code = int(route.split("/")[2])
        await ws.recv()
        await close_with(ws, code)
    elif route.startswith("/drive/"):
        code = int(route.split("/")[2])
        for payload, _ in drive_series():
            await ws.send(payload)
        for payload, _ in drive_series():
            got = await ws.recv()
            if got != payload or type(got) is not type(payload):
                await ws.close(4001, "echo mismatch")
                return
        await close_with(ws, code)


async def process_request(path, headers):
    route = path.split("?", 1)[0]
    known = ("/", "/first-only", "/double", "/silent", "/info", "/auth")
    if route == "/refuse":
        return HTTPStatus.FORBIDDEN, [], b"refused as asked\n"
    if route == "/auth":
        if headers.get_all("Authorization") != ["Bearer x"]:
            return HTTPStatus.FORBIDDEN, [], b"missing or wrong Authorization\n"
        cookies = [c.strip() for v in headers.get_all("Cookie") for c in v.split(";")]
        if "a=b" not in cookies:
            return HTTPStatus.FORBIDDEN, [], b"missing cookie a=b\n"
        return None
    if route in known or route.startswith("/close/") or route.startswith("/drive/"):
        return None
    return HTTPStatus.NOT_FOUND, [], b"no such path\n"


def select_subprotocol(client_offers, server_supports):
    """The first one the client offered that this server knows."""
    for p in client_offers:
        if p in server_supports:
            return p
    return None


async def raw(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        return
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1] if len(parts) > 1 else "/"
    key = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    ok = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
          "Connection: Upgrade\r\n")
    if path == "/bad-accept":
        wrong = base64.b64encode(hashlib.sha1(b"wrong").digest()).decode()
        writer.write((ok + f"Sec-WebSocket-Accept: {wrong}\r\n\r\n").encode())
    elif path == "/bad-proto":
        writer.write((ok + f"Sec-WebSocket-Accept: {accept}\r\n"
                      "Sec-WebSocket-Protocol: unoffered\r\n\r\n").encode())
    elif path == "/bad-ext":
        writer.write((ok + f"Sec-WebSocket-Accept: {accept}\r\n"
                      "Sec-WebSocket-Extensions: x-unknown\r\n\r\n").encode())
    elif path == "/not-101":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n"
                     b"Content-Type: text/plain\r\n\r\nhello\n")
    elif path == "/garbage":
        writer.write(b"this is not HTTP at all\r\n\r\n")
    # /hangup and anything else: no answer
    try:
        await writer.drain()
        # Keep a 101 open a moment so the client judges the answer, not EOF.
        if path.startswith("/bad-"):
            await asyncio.wait_for(reader.read(65536), 2)
    except (asyncio.TimeoutError, ConnectionError):
        pass
    writer.close()


async def main(port, rawport):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    hosts = ["127.0.0.1"]
    try:
        import socket
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        hosts.append("::1")
    except OSError:
        pass
    async with websockets.serve(
        handler, hosts, port, max_size=None, max_queue=None,
        process_request=process_request,
        subprotocols=["chat", "superchat"],
        select_subprotocol=select_subprotocol,
    ):
        rawsrv = None
        if rawport is not None:
            rawsrv = await asyncio.start_server(raw, "127.0.0.1", rawport)
        print(port, flush=True)
        await stop
        if rawsrv is not None:
            rawsrv.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None))
