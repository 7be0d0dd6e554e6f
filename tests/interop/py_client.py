#!/usr/bin/python3
"""Interop: Python's websockets (Debian's 10.4) as a client of `kaze echo`.

usage: py_client.py URL MAX_MESSAGE

The server behind URL must be `kaze echo --subprotocol chat --max-message
MAX_MESSAGE` (tests/interop/run.sh starts one), which negotiates
permessage-deflate (RFC 7692) by default. Every case runs in each client
configuration of MODES: websockets' default (compression="deflate": it offers
permessage-deflate and, once agreed, compresses every message), compression=None
(nothing offered, nothing may be agreed), and, for the cases in DEFLATE_PARAM_CASES,
an offer with every parameter set. Each connection checks what was agreed. Every
case opens its own connection, so one failure does not hide the next. The last
line printed is `N passed, N failed`; the exit status is non-zero when any case
failed.
"""
import asyncio
import random
import sys
import traceback

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate

URL = ""
MAX_MESSAGE = 0
MIB16 = 16 << 20

# Generous bounds: they only stop a hung case, they never measure speed (the
# ASan build echoes 16 MiB far slower than the release build).
CASE_TIMEOUT = 120.0
OPTS = dict(
    open_timeout=30,
    close_timeout=30,
    ping_interval=None,  # no keepalive pings of the client's own during a case
    max_size=None,
)


class Mode:
    """A client configuration: connect() options and what must then be agreed."""

    def __init__(self, name, options, check):
        self.name, self.options, self.check = name, options, check


def _deflate_agreed(ws, want=None):
    exts = ws.extensions
    expect(len(exts) == 1 and isinstance(exts[0], PerMessageDeflate),
           f"permessage-deflate offered, agreed extensions: {exts!r}")
    if want:
        e = exts[0]
        for attr, value in want.items():
            got = getattr(e, attr)
            expect(got == value, f"agreed {e!r}: {attr} is {got}, expected {value}")


def _nothing_agreed(ws):
    expect(not ws.extensions, f"nothing offered, but the server agreed to {ws.extensions!r}")


MODES = [
    Mode("deflate", {}, _deflate_agreed),
    Mode("no compression", {"compression": None}, _nothing_agreed),
    # Every parameter (RFC 7692 7.1): the server must accept the offer with these
    # values (it may answer smaller windows; kaze answers what was asked).
    Mode("deflate, no context takeover, windows 10/9",
         {"compression": None, "extensions": [ClientPerMessageDeflateFactory(
             server_no_context_takeover=True, client_no_context_takeover=True,
             server_max_window_bits=10, client_max_window_bits=9, compress_settings={"memLevel": 5})]},
         lambda ws: _deflate_agreed(ws, {"remote_no_context_takeover": True,
                                         "local_no_context_takeover": True,
                                         "remote_max_window_bits": 10, "local_max_window_bits": 9})),
]
MODE = MODES[0]


class connect:
    """websockets.connect in the current MODE; checks what was agreed."""

    def __init__(self, **kw):
        self.kw = kw
        self.ws = None

    async def __aenter__(self):
        self.ws = await websockets.connect(URL, **{**OPTS, **MODE.options, **self.kw})
        try:
            MODE.check(self.ws)
        except BaseException:
            await self.ws.close()
            raise
        return self.ws

    async def __aexit__(self, *exc):
        await self.ws.close()


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def describe(data):
    if isinstance(data, str):
        return f"text of {len(data.encode())} bytes"
    return f"binary of {len(data)} bytes"


async def echo_one(ws, msg):
    """Sends msg and checks that the same message of the same type comes back."""
    await ws.send(msg)
    got = await ws.recv()
    expect(type(got) is type(msg), f"sent {describe(msg)}, got back {describe(got)}")
    expect(got == msg, f"sent {describe(msg)}, got back different content ({describe(got)})")


async def closes_normally(ws):
    await ws.close()
    expect(ws.close_code == 1000, f"close: server answered {ws.close_code}, not 1000")


def text_of_bytes(n):
    """Valid UTF-8 text of exactly n bytes, with 1- to 4-byte characters throughout."""
    unit = "kaze é ß ж 世界 ☃ 🌍 ~ "
    b = unit.encode()
    s = unit * (n // len(b))
    s += "x" * (n - len(s.encode()))
    expect(len(s.encode()) == n, "text_of_bytes")
    return s


# ---- the cases ------------------------------------------------------------

async def case_text():
    async with connect() as ws:
        expect(ws.subprotocol is None, f"no subprotocol offered, server chose {ws.subprotocol!r}")
        await echo_one(ws, "hello, kaze")
        await echo_one(ws, "x" * 125)  # largest 7-bit length
        await echo_one(ws, "y" * 126)  # 16-bit length
        await echo_one(ws, "z" * 65536)  # 64-bit length
        await closes_normally(ws)


async def case_binary():
    async with connect() as ws:
        await echo_one(ws, bytes(range(256)))
        await echo_one(ws, b"\x00" * 126)
        await echo_one(ws, random.Random(1).randbytes(70000))
        await closes_normally(ws)


async def case_empty():
    async with connect() as ws:
        await echo_one(ws, "")
        await echo_one(ws, b"")
        await echo_one(ws, "after empty")
        await closes_normally(ws)


async def case_fragmented():
    async def text_parts():
        for part in ["frag", "mented ", "", "téxt 🌍", "!"]:
            yield part

    async def binary_parts():
        for i in range(10):
            yield bytes([i]) * (i * 1000)

    async with connect() as ws:
        await ws.send(text_parts())
        got = await ws.recv()
        expect(got == "fragmented téxt 🌍!", f"fragmented text came back as {got!r}")
        await ws.send(binary_parts())
        got = await ws.recv()
        want = b"".join(bytes([i]) * (i * 1000) for i in range(10))
        expect(got == want, f"fragmented binary came back as {describe(got)}")
        await echo_one(ws, "after fragments")
        await closes_normally(ws)


async def case_fragmented_utf8_split():
    # A 4-byte character split across three frames: the server must carry its
    # UTF-8 state from frame to frame. websockets' public API only fragments
    # at character boundaries, so this uses its frame writer directly.
    from websockets.frames import Opcode

    data = "a🌍b".encode()  # 61 f0 9f 8c 8d 62
    async with connect() as ws:
        await ws.write_frame(False, Opcode.TEXT, data[:2])
        await ws.write_frame(False, Opcode.CONT, data[2:4])
        await ws.write_frame(True, Opcode.CONT, data[4:])
        got = await ws.recv()
        expect(got == "a🌍b", f"came back as {got!r}")
        await closes_normally(ws)


async def case_16mib_text():
    msg = text_of_bytes(MIB16)
    async with connect() as ws:
        await echo_one(ws, msg)
        await echo_one(ws, "small after big")
        await closes_normally(ws)


async def case_16mib_binary():
    msg = random.Random(16).randbytes(MIB16)
    async with connect() as ws:
        await echo_one(ws, msg)
        await echo_one(ws, b"small after big")
        await closes_normally(ws)


async def case_many_in_flight():
    rng = random.Random(7)
    msgs = []
    for i in range(2000):
        n = rng.choice([0, 1, 7, 125, 126, 1000, 4096, 20000])
        if i % 2:
            msgs.append(f"{i}:" + "m" * n)
        else:
            msgs.append(i.to_bytes(4, "big") + bytes([i & 0xFF]) * n)
    async with connect() as ws:
        async def sender():
            for m in msgs:
                await ws.send(m)

        send_task = asyncio.ensure_future(sender())
        try:
            for i, want in enumerate(msgs):
                got = await ws.recv()
                expect(got == want, f"message {i}: sent {describe(want)}, got {describe(got)}")
        finally:
            if not send_task.done():
                send_task.cancel()
        await send_task
        await closes_normally(ws)


async def case_ping():
    async with connect() as ws:
        pong = await ws.ping(b"kaze-ping")
        await asyncio.wait_for(pong, 30)
        pong = await ws.ping(b"")  # empty payload
        await asyncio.wait_for(pong, 30)
        # A ping between the frames of a fragmented message.
        from websockets.frames import Opcode

        await ws.write_frame(False, Opcode.TEXT, b"be")
        pong = await ws.ping(b"mid-message")
        await ws.write_frame(True, Opcode.CONT, b"tween")
        await asyncio.wait_for(pong, 30)
        got = await ws.recv()
        expect(got == "between", f"message around the ping came back as {got!r}")
        await closes_normally(ws)


async def case_utf8():
    samples = [
        "héllo wörld",
        "日本語のテキスト",
        "🌍🚀🎉",
        "\u007f\u0080\u07ff\u0800\ufffd\uffff\ue000\U00010000\U0010ffff",
        "mixed: aé世🌍" * 1000,
    ]
    async with connect() as ws:
        for s in samples:
            await echo_one(ws, s)
        await closes_normally(ws)


async def case_subprotocol():
    async with connect(subprotocols=["chat"]) as ws:
        expect(ws.subprotocol == "chat", f"offered chat, server chose {ws.subprotocol!r}")
        await echo_one(ws, "chatting")
        await closes_normally(ws)
    async with connect(subprotocols=["superchat", "chat"]) as ws:
        expect(ws.subprotocol == "chat", f"offered superchat, chat; server chose {ws.subprotocol!r}")
        await closes_normally(ws)


async def case_close_1000():
    async with connect() as ws:
        await echo_one(ws, "bye")
        await ws.close(1000)
        expect(ws.close_code == 1000, f"server answered {ws.close_code}, not 1000")


async def case_close_4001_reason():
    async with connect() as ws:
        await ws.close(4001, "done here")
        expect(ws.close_code == 4001, f"server answered {ws.close_code}, not 4001")
        print(f"    (server's close reason: {ws.close_reason!r})")


async def case_too_big_1009():
    msg = "a" * (MAX_MESSAGE + 1)
    async with connect() as ws:
        try:
            await ws.send(msg)
            await ws.recv()
            raise AssertionError("the message over --max-message came back")
        except websockets.ConnectionClosed:
            pass
        await ws.wait_closed()
        expect(ws.close_code == 1009, f"closed with {ws.close_code}, not 1009")


async def case_repeats():
    # The same 100 KiB five times and variations of it: with context takeover each
    # side's compressor refers back into earlier messages.
    base = text_of_bytes(100_000)
    msgs = [base, base, base[::-1], base[:50_000] + "changed" + base[50_007:], base]
    async with connect() as ws:
        for m in msgs:
            await echo_one(ws, m)
            await echo_one(ws, m.encode())
        await closes_normally(ws)


async def case_alive_after_all():
    async with connect() as ws:
        await echo_one(ws, "still here")
        await closes_normally(ws)


CASES = [
    ("text", case_text),
    ("binary", case_binary),
    ("empty messages", case_empty),
    ("fragmented text and binary", case_fragmented),
    ("UTF-8 character split across fragments", case_fragmented_utf8_split),
    ("16 MiB text", case_16mib_text),
    ("16 MiB binary", case_16mib_binary),
    ("2000 messages in flight", case_many_in_flight),
    ("ping and pong", case_ping),
    ("UTF-8 multi-byte text", case_utf8),
    ("subprotocol chat", case_subprotocol),
    ("close 1000", case_close_1000),
    ("close 4001 with reason", case_close_4001_reason),
    ("message over --max-message closes 1009", case_too_big_1009),
    ("repeated 100 KiB messages", case_repeats),
    ("server still serves afterwards", case_alive_after_all),
]


# The cases also run with every permessage-deflate parameter set.
DEFLATE_PARAM_CASES = {"text", "binary", "empty messages", "fragmented text and binary",
                       "UTF-8 character split across fragments", "16 MiB text", "2000 messages in flight",
                       "message over --max-message closes 1009", "repeated 100 KiB messages"}


async def main():
    global MODE
    passed = failed = 0
    for mode in MODES:
        MODE = mode
        for name, case in CASES:
            if mode is MODES[2] and name not in DEFLATE_PARAM_CASES:
                continue
            label = f"[{mode.name}] {name}"
            try:
                await asyncio.wait_for(case(), CASE_TIMEOUT)
            except asyncio.TimeoutError:
                failed += 1
                print(f"FAIL {label}: no result within {CASE_TIMEOUT:.0f} s")
            except Exception as e:  # noqa: BLE001 - any error fails the case
                failed += 1
                print(f"FAIL {label}: {type(e).__name__}: {e}")
                traceback.print_exc(limit=3, file=sys.stdout)
            else:
                passed += 1
                print(f"ok   {label}")
            sys.stdout.flush()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: py_client.py URL MAX_MESSAGE")
    URL = sys.argv[1]
    MAX_MESSAGE = int(sys.argv[2])
    sys.exit(asyncio.run(main()))
