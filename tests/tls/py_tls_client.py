#!/usr/bin/python3
"""TLS tests: Python's websockets (Debian's 10.4) and ssl as clients of kaze over wss://.

Every mode verifies the server's certificate against CA (the test CA of
make_certs.sh) and its name, as any real client does.

    py_tls_client.py echo URL CA
        The echo cases (text, binary, 4 MiB, 1000 messages in flight, ping,
        subprotocol "chat") with permessage-deflate offered and not. The server
        must be `kaze echo --subprotocol chat` over TLS. Prints a line per case,
        then "N passed, N failed"; exit status 1 if any failed.
    py_tls_client.py hold URL CA GO_FILE
        Opens a connection and prints "open SUBJECT" (the server certificate's
        subject), then waits (up to 60 s) until GO_FILE exists, echoes a message,
        closes with 1000 and prints "echo ok". For a connection that has to outlive
        a certificate reload.
    py_tls_client.py cert URL CA [SERVERNAME]
        One connection (SNI SERVERNAME, also the name checked; the default is
        the URL's host): prints "subject SUBJECT", echoes one message, closes.
    py_tls_client.py peer HOST PORT CA [SERVERNAME]
        A TLS handshake only (SNI SERVERNAME, which is also the name checked; the
        default is HOST); prints "subject SUBJECT" and "version TLSv1.x".
    py_tls_client.py reject HOST PORT CA
        A TLS handshake that must fail because this client does not trust the
        server's certificate; prints "rejected: REASON". Exit status 1 if the
        handshake succeeded.

SUBJECT is "O=...,CN=..." of the server's leaf certificate.
"""
import asyncio
import random
import socket
import ssl
import sys
import time
import traceback

import websockets

CASE_TIMEOUT = 60.0
OPTS = dict(open_timeout=20, close_timeout=20, ping_interval=None, max_size=None)
MIB4 = 4 << 20


def context(ca):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    # create_default_context() already does this; say it, since it is the point.
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def subject_of(cert):
    """'O=...,CN=...' from the dict of SSLSocket.getpeercert()."""
    parts = dict(kv for rdn in cert["subject"] for kv in rdn)
    return f"O={parts.get('organizationName', '')},CN={parts.get('commonName', '')}"


def ws_subject(ws):
    return subject_of(ws.transport.get_extra_info("ssl_object").getpeercert())


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def describe(data):
    kind = "text" if isinstance(data, str) else "binary"
    return f"{kind} of {len(data.encode() if isinstance(data, str) else data)} bytes"


async def echo_one(ws, msg):
    await ws.send(msg)
    got = await ws.recv()
    expect(type(got) is type(msg), f"sent {describe(msg)}, got back {describe(got)}")
    expect(got == msg, f"sent {describe(msg)}, got back different content ({describe(got)})")


async def closes_normally(ws):
    await ws.close()
    expect(ws.close_code == 1000, f"close: server answered {ws.close_code}, not 1000")


def text_of_bytes(n):
    unit = "kaze é ß ж 世界 ☃ 🌍 ~ "
    b = unit.encode()
    s = unit * (n // len(b))
    s += "x" * (n - len(s.encode()))
    return s


# ---- echo mode ---------------------------------------------------------------

class Echo:
    def __init__(self, url, ca, compression):
        self.url, self.ctx, self.compression = url, context(ca), compression

    async def connect(self, **kw):
        opts = {**OPTS, **kw}
        if not self.compression:
            opts["compression"] = None
        ws = await websockets.connect(self.url, ssl=self.ctx, **opts)
        ssl_obj = ws.transport.get_extra_info("ssl_object")
        expect(ssl_obj is not None, "no TLS under the connection")
        expect(ssl_obj.version() in ("TLSv1.2", "TLSv1.3"), f"TLS version {ssl_obj.version()}")
        names = [e.name for e in ws.extensions]
        if self.compression:
            expect(names == ["permessage-deflate"], f"permessage-deflate offered, agreed: {names}")
        else:
            expect(names == [], f"nothing offered, agreed: {names}")
        return ws

    async def case_text(self):
        ws = await self.connect()
        expect(ws.subprotocol is None, f"no subprotocol offered, server chose {ws.subprotocol!r}")
        for m in ["hello over TLS", "x" * 125, "y" * 126, "z" * 65536, text_of_bytes(20000), ""]:
            await echo_one(ws, m)
        await closes_normally(ws)

    async def case_binary(self):
        ws = await self.connect()
        for m in [bytes(range(256)), b"", b"\x00" * 126, random.Random(1).randbytes(70000)]:
            await echo_one(ws, m)
        await closes_normally(ws)

    async def case_4mib(self):
        ws = await self.connect()
        await echo_one(ws, text_of_bytes(MIB4))
        await echo_one(ws, random.Random(4).randbytes(MIB4))
        await echo_one(ws, "small after big")
        await closes_normally(ws)

    async def case_many(self):
        rng = random.Random(7)
        msgs = []
        for i in range(1000):
            n = rng.choice([0, 1, 125, 126, 1000, 4096, 20000, 70000])
            msgs.append(f"{i}:" + "m" * n if i % 2 else i.to_bytes(4, "big") + rng.randbytes(n))
        ws = await self.connect()

        async def sender():
            for m in msgs:
                await ws.send(m)

        task = asyncio.ensure_future(sender())
        try:
            for i, want in enumerate(msgs):
                got = await ws.recv()
                expect(got == want, f"message {i}: sent {describe(want)}, got {describe(got)}")
        finally:
            if not task.done():
                task.cancel()
        await task
        await closes_normally(ws)

    async def case_ping(self):
        ws = await self.connect()
        pong = await ws.ping(b"tls-ping")
        await asyncio.wait_for(pong, 20)
        await echo_one(ws, "after ping")
        await closes_normally(ws)

    async def case_subprotocol(self):
        ws = await self.connect(subprotocols=["superchat", "chat"])
        expect(ws.subprotocol == "chat", f"offered superchat, chat; server chose {ws.subprotocol!r}")
        await echo_one(ws, "chatting")
        await closes_normally(ws)

    async def case_close_code(self):
        ws = await self.connect()
        await ws.close(4001, "done")
        expect(ws.close_code == 4001, f"closed 4001, server answered {ws.close_code}")

    CASES = [("text", case_text), ("binary", case_binary), ("4 MiB text and binary", case_4mib),
             ("1000 messages in flight", case_many), ("ping", case_ping),
             ("subprotocol chat", case_subprotocol), ("close 4001", case_close_code)]


async def run_echo(url, ca):
    passed = failed = 0
    for compression in (True, False):
        e = Echo(url, ca, compression)
        mode = "deflate" if compression else "no compression"
        for name, case in Echo.CASES:
            label = f"python [{mode}] {name}"
            try:
                await asyncio.wait_for(case(e), CASE_TIMEOUT)
            except asyncio.TimeoutError:
                failed += 1
                print(f"FAIL {label}: no result within {CASE_TIMEOUT:.0f} s")
            except Exception as ex:  # noqa: BLE001 - any error fails the case
                failed += 1
                print(f"FAIL {label}: {type(ex).__name__}: {ex}")
                traceback.print_exc(limit=3, file=sys.stdout)
            else:
                passed += 1
                print(f"ok   {label}")
            sys.stdout.flush()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


# ---- the other modes ----------------------------------------------------------

async def run_hold(url, ca, go_file):
    import os

    async with websockets.connect(url, ssl=context(ca), **OPTS) as ws:
        await echo_one(ws, "before")
        print(f"open {ws_subject(ws)}", flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(go_file):
            if time.monotonic() > deadline:
                print("no go file within 60 s", flush=True)
                return 1
            await asyncio.sleep(0.05)
        await echo_one(ws, "still here after the reload")
        await echo_one(ws, random.Random(2).randbytes(300000))
        await closes_normally(ws)
    print("echo ok", flush=True)
    return 0


async def run_cert(url, ca, servername=None):
    extra = {"server_hostname": servername} if servername else {}
    async with websockets.connect(url, ssl=context(ca), **OPTS, **extra) as ws:
        print(f"subject {ws_subject(ws)}", flush=True)
        await echo_one(ws, "new connection")
        await closes_normally(ws)
    return 0


def run_peer(host, port, ca, servername):
    ctx = context(ca)
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=servername or host) as s:
            print(f"subject {subject_of(s.getpeercert())}")
            print(f"version {s.version()}")
    return 0


def run_reject(host, port, ca):
    ctx = context(ca)
    with socket.create_connection((host, port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                print(f"accepted {subject_of(s.getpeercert())}: expected a rejection")
                return 1
        except ssl.SSLCertVerificationError as e:
            print(f"rejected: {e.verify_message}")
            return 0


def main(argv):
    usage = __doc__
    if len(argv) < 2:
        sys.exit(usage)
    mode, args = argv[1], argv[2:]
    if mode == "echo" and len(args) == 2:
        return asyncio.run(run_echo(*args))
    if mode == "hold" and len(args) == 3:
        return asyncio.run(run_hold(*args))
    if mode == "cert" and len(args) in (2, 3):
        return asyncio.run(run_cert(*args))
    if mode == "peer" and len(args) in (3, 4):
        return run_peer(args[0], int(args[1]), args[2], args[3] if len(args) == 4 else None)
    if mode == "reject" and len(args) == 3:
        return run_reject(args[0], int(args[1]), args[2])
    sys.exit(usage)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
