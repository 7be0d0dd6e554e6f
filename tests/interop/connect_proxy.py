#!/usr/bin/python3
"""A small HTTP CONNECT proxy for the `kaze client` tests (client_cli.sh).

    connect_proxy.py PORT [--auth USER:PASS] [--log FILE]

Listens on 127.0.0.1:PORT (0: any free port) and prints the port once
listening. CONNECT host:port is answered with 200 and the bytes are piped
both ways; 502 when the target cannot be reached. With --auth, a CONNECT
without the right "Proxy-Authorization: Basic ..." gets 407 with
Proxy-Authenticate. Any other method gets 403. Every CONNECT request line is
appended to --log, followed by the status the proxy answered:
"CONNECT 127.0.0.1:8080 HTTP/1.1 -> 200". SIGTERM stops it.
"""
import argparse
import asyncio
import base64
import signal


def log_line(path, line):
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def split_target(target):
    """host:port or [v6]:port -> (host, port)."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest.lstrip(":"))
    host, _, port = target.rpartition(":")
    return host, int(port)


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def answer(writer, status, reason, extra=""):
    body = f"{status} {reason}\n"
    writer.write(
        (f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: {len(body)}\r\n"
         f"Connection: close\r\n\r\n{body}").encode())
    try:
        await writer.drain()
    except ConnectionError:
        pass
    writer.close()


def make_handler(args):
    expected = None
    if args.auth:
        expected = "Basic " + base64.b64encode(args.auth.encode()).decode()

    async def handle(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        request_line = lines[0]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        parts = request_line.split(" ")
        if len(parts) != 3 or parts[0] != "CONNECT":
            await answer(writer, 403, "Forbidden")
            return
        if expected is not None and headers.get("proxy-authorization") != expected:
            log_line(args.log, request_line + " -> 407")
            await answer(writer, 407, "Proxy Authentication Required",
                         'Proxy-Authenticate: Basic realm="kaze-test"\r\n')
            return
        try:
            host, port = split_target(parts[1])
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except (OSError, ValueError):
            log_line(args.log, request_line + " -> 502")
            await answer(writer, 502, "Bad Gateway")
            return
        log_line(args.log, request_line + " -> 200")
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        a = asyncio.ensure_future(pipe(reader, up_writer))
        b = asyncio.ensure_future(pipe(up_reader, writer))
        await asyncio.gather(a, b)
        up_writer.close()
        writer.close()

    return handle


async def main(args):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    server = await asyncio.start_server(make_handler(args), "127.0.0.1", args.port)
    print(server.sockets[0].getsockname()[1], flush=True)
    await stop
    server.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--auth")
    p.add_argument("--log")
    asyncio.run(main(p.parse_args()))
