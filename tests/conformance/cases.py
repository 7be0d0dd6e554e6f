"""The conformance cases, grouped and numbered like the Autobahn|TestSuite.

Groups 1-7, 9 and 10 follow Autobahn's case definitions (payloads, how the
bytes are chopped, what is expected back) with Autobahn's STRICT outcome: where
Autobahn also accepts a NON-STRICT alternative, only the strict one passes here.
Where a case fails the connection, the server must send a close frame with the
expected code and then close TCP in an orderly way (FIN), RFC 6455 7.1.7/7.1.1.

Extra groups, not in Autobahn:
  hs.*    opening handshake: rejections (400/405/426/431) and accepted variants
  sub.*   subprotocol selection (server started with --subprotocol chat --subprotocol superchat)
  pipe.*  many frames and messages pipelined in one TCP write
  lim.*   message/frame size limits (1009), on a server started with --max-message 1024
          and on the default 16 MiB limit
  x.*     other framing rules Autobahn does not test (unmasked client frames, length MSB)

Groups 12 and 13 (permessage-deflate, RFC 7692) and the pmd* groups are in
cases_deflate.py, which adds its cases to CASES.

A case is a list of actions run in order against a fresh connection, the
events it expects back (messages and pongs, in order), and how the connection
must end:
  NORMAL           the client closes with 1000 once the expected events are in;
                   the server must answer with 1000 (or an empty close) and close TCP
  FAIL(codes)      the server must fail the connection: close frame with one of codes
  REPLY(codes)     the client's actions already sent a close frame; the server must
                   answer with one of codes (None stands for an empty close body)
"""

import time

from wsclient import (BINARY, CLOSE, CONT, PING, PONG, TEXT, Conn, HandshakeError, Timeout,
                      accept_value, build_frame, close_payload, short, valid_utf8)

# How long to wait for what a case expects, and for the close handshake and the
# TCP close that must follow it. Generous: on loopback all of these take microseconds.
EVENT_WAIT = 10.0
FAIL_WAIT = 5.0       # for the server's close frame when a case fails the connection
FAST_WAIT = 5.0       # fail-fast checks: the close must come before we send the rest
CLOSE_WAIT = 5.0
SYNC_PAUSE = 0.01     # "frame-wise chops": a short pause so each frame is its own segment

# When true, a TCP reset after the close frame fails the case (RFC 6455 7.1.1 asks for a
# clean TCP close and shows shutdown(SHUT_WR) + recv() until 0 as the way to get one).
REQUIRE_FIN = True


# ----------------------------------------------------------------- outcome specs

class Close:
    def __init__(self, kind, codes):
        self.kind, self.codes = kind, codes


NORMAL = Close("normal", (1000, None))


def FAIL(*codes):
    return Close("fail", codes)


def REPLY(*codes):
    return Close("reply", codes)


# ----------------------------------------------------------------------- actions
# Each action is a callable taking the running case's Ctx.

class Ctx:
    def __init__(self, conn):
        self.conn = conn
        self.problems = []


def F(opcode, payload=b"", fin=True, rsv=0, chop=None, delay=0.0, sync=False, **kw):
    """Send one frame. chop: bytes per send() call; sync: frame-wise (own segment)."""
    def act(ctx):
        ctx.conn.send_frame(opcode, payload, fin=fin, rsv=rsv, chop=chop, delay=delay, **kw)
        if sync:
            ctx.conn.pump(SYNC_PAUSE)
    return act


def RAW(data, chop=None, delay=0.0, has_close=False):
    """Send bytes as they are. has_close: they hold our close frame (so we do not answer
    the server's close with a second one, RFC 6455 5.5.1)."""
    def act(ctx):
        if has_close:
            ctx.conn.close_sent = True
        ctx.conn.send_raw(data, chop=chop, delay=delay)
    return act


def MESSAGE(opcode, payload, frag=None, chop=None):
    """A message as one frame, or in fragments of `frag` bytes, all in one write."""
    def act(ctx):
        ctx.conn.send_raw(message_bytes(opcode, payload, frag), chop=chop)
    return act


def message_bytes(opcode, payload, frag=None):
    if not frag or len(payload) <= frag:
        return build_frame(opcode, payload)
    out = []
    n = len(payload)
    for off in range(0, n, frag):
        out.append(build_frame(opcode if off == 0 else CONT, payload[off:off + frag],
                               fin=off + frag >= n))
    return b"".join(out)


def CLOSE_FRAME(code=None, reason=b"", raw_payload=None):
    """Send a close frame: a code and reason, or any raw body."""
    body = close_payload(code, reason) if raw_payload is None else raw_payload
    return F(CLOSE, body)


def SLEEP(seconds):
    def act(ctx):
        ctx.conn.pump(seconds)
    return act


def QUIET(seconds, label):
    """Wait; the peer must neither close nor answer meanwhile (Autobahn's "timeout")."""
    def act(ctx):
        c = ctx.conn
        n = len(c.events)
        c.pump(seconds)
        if c.close_received or c.tcp_end or len(c.events) != n:
            ctx.problems.append("%s: the %s %s before it was due to" % (
                label, c.PEER, "closed (%s)" % c.describe_end() if (c.close_received or c.tcp_end)
                else "answered %r" % (c.events[n:],)))
    return act


def CLOSED_WITHIN(seconds, label):
    """Fail-fast: the close frame must arrive before we send anything more."""
    def act(ctx):
        c = ctx.conn
        if not c.wait(lambda: c.close_received, seconds):
            ctx.problems.append("%s: no close frame within %.0f s (%s), so the %s did not "
                                "fail fast" % (label, seconds, c.describe_end(), c.PEER))
    return act


def WAIT_EVENTS(n, seconds=EVENT_WAIT):
    def act(ctx):
        c = ctx.conn
        if not c.wait(lambda: len(data_events(c)) >= n, seconds):
            ctx.problems.append("waited %.0f s for %d event(s) before sending more, got %r"
                                % (seconds, n, describe_events(data_events(c))))
    return act


# ------------------------------------------------------------------------- cases

class Case:
    def __init__(self, cid, desc, actions=(), expect=(), close=NORMAL, profile="default",
                 timeout=EVENT_WAIT, expect_any=None, match=None, run=None, protocols=None,
                 extensions=None, after=None):
        self.id, self.desc = cid, desc
        self.actions = actions          # list, or a callable returning the list (lazy payloads)
        self.expect = expect            # list of events, or a callable returning it
        self.expect_any = expect_any    # several acceptable event lists (informational cases)
        self.match = match              # custom comparison: events -> problem or None
        self.close = close
        self.profile = profile          # which kaze echo configuration (run.py PROFILES)
        self.timeout = timeout
        self.run = run                  # a whole custom case: (host, port, pid) -> problems
        self.protocols = protocols
        self.extensions = extensions    # Sec-WebSocket-Extensions value(s) to offer
        self.after = after              # more checks once the connection ended: (conn, pid) -> problems
        self.info = ""                  # what happened in the last run, for -vv

    def key(self):
        """Autobahn's numeric groups first, in numeric order, then the extra groups."""
        parts = self.id.split(".")
        if parts[0].isdigit():
            return (0, 0, tuple(int(p) for p in parts))
        return (1, EXTRA_GROUPS.index(parts[0]), tuple(int(p) for p in parts[1:]))


EXTRA_GROUPS = ["hs", "sub", "pipe", "lim", "x"]


CASES = []


def case(*a, **kw):
    CASES.append(Case(*a, **kw))


def msg(kind, payload):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return ("message", kind, payload)


def pong(payload):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return ("pong", payload)


def data_events(c):
    """Events to compare: server-initiated pings are answered and left out."""
    return [e for e in c.events if e[0] != "ping"]


def describe_event(e):
    if e[0] == "message":
        return "%s message %s" % (e[1], short(e[2]))
    return "%s %s" % (e[0], short(e[1]))


def describe_events(evs):
    return "[" + ", ".join(describe_event(e) for e in evs) + "]"


def diff_events(expected, got):
    for i, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            extra = ""
            if e[0] == g[0] == "message" and e[1] == g[1]:
                for j, (a, b) in enumerate(zip(e[2], g[2])):
                    if a != b:
                        extra = " (first difference at byte %d)" % j
                        break
                else:
                    extra = " (lengths %d vs %d)" % (len(e[2]), len(g[2]))
            return "event %d: expected %s, got %s%s" % (i, describe_event(e), describe_event(g), extra)
    if len(got) < len(expected):
        return "expected %s, got only %s (missing %s)" % (
            len(expected), len(got), describe_events(expected[len(got):]))
    return "unexpected extra event(s) %s" % describe_events(got[len(expected):])


# --------------------------------------------------------------------- execution

def run_case(c, host, port, pid=None):
    """Run one case; returns a list of problems (empty when it passed). pid: the
    server's process id, for cases that look at the server itself."""
    if c.run is not None:
        return c.run(host, port, pid)
    conn = Conn(host, port, timeout=max(c.timeout, 10.0))
    try:
        try:
            conn.connect()
            conn.handshake(protocols=c.protocols, extensions=c.extensions)
        except (OSError, HandshakeError, Timeout) as e:
            return ["handshake failed: %s" % e]
        ctx = Ctx(conn)
        actions = c.actions() if callable(c.actions) else c.actions
        expect = c.expect() if callable(c.expect) else c.expect
        for act in actions:
            if conn.close_received or conn.tcp_end or conn.send_error:
                break  # the server failed the connection: stop, like Autobahn's cases do
            act(ctx)
        finish(c, conn, expect)
        c.info = "%s; %s; %d bytes sent" % (describe_events(data_events(conn)), conn.describe_end(),
                                            conn.sent_bytes)
        problems = check(c, conn, ctx, expect)
        if c.after is not None:
            problems += c.after(conn, pid)
        return problems
    except Timeout as e:
        return ["timed out: %s; %s" % (e, conn.describe_end())]
    finally:
        conn.close_socket()


def finish(c, conn, expect):
    if c.close.kind == "normal":
        want = max(len(expect), *(len(a) for a in c.expect_any)) if c.expect_any else len(expect)
        conn.wait(lambda: len(data_events(conn)) >= want or conn.close_received, c.timeout)
        if not conn.close_sent and conn.tcp_end is None:
            conn.send_close(1000)
        conn.wait(lambda: conn.close_received, CLOSE_WAIT)
    else:
        # Stop early when the server answered with something it should not have:
        # a server that echoes an invalid message will not fail the connection later.
        def done():
            evs = data_events(conn)
            return conn.close_received or (c.expect_any is None and c.match is None and (
                len(evs) > len(expect) or evs != expect[:len(evs)]))
        conn.wait(done, FAIL_WAIT if c.close.kind == "fail" else CLOSE_WAIT)
    if conn.close_received:
        # The server must close TCP after the close handshake (RFC 6455 7.1.1). Without a
        # close frame the case has failed already; whether TCP ended is recorded as is.
        conn.wait_tcp_end(CLOSE_WAIT)


def check(c, conn, ctx, expect):
    problems = list(ctx.problems)
    problems += ["protocol violation: " + v for v in conn.violations]
    evs = data_events(conn)
    if c.match is not None:
        p = c.match(evs)
        if p:
            problems.append(p)
    elif c.expect_any is not None:
        if evs not in c.expect_any:
            problems.append("got %s, expected one of %s"
                            % (describe_events(evs), " or ".join(describe_events(a) for a in c.expect_any)))
    elif evs != expect:
        problems.append(diff_events(expect, evs))
    # How the connection ended.
    codes = c.close.codes
    want = " or ".join("empty" if x is None else str(x) for x in codes)
    if not conn.close_received:
        if c.close.kind == "fail":
            problems.append("expected a close frame with %s, got %s" % (want, conn.describe_end()))
        else:
            problems.append("expected the server's close reply (%s), got %s" % (want, conn.describe_end()))
        return problems
    if conn.close_code not in codes:
        problems.append("close code %s, expected %s" % (
            "empty" if conn.close_code is None else conn.close_code, want))
    if c.close.kind == "normal" and conn.close_initiator == "server":
        problems.append("the server closed first (%s) while a normal close by the client was expected"
                        % conn.describe_end())
    if conn.tcp_end is None:
        problems.append("the server did not close TCP within %.0f s after the close frame" % CLOSE_WAIT)
    elif conn.tcp_end == "reset" and REQUIRE_FIN:
        problems.append("TCP was reset (RST) after the close frame instead of closed cleanly "
                        "(FIN); RFC 6455 7.1.1")
    return problems


# ======================================================================== group 1
# Framing: text and binary messages at every length class (7-bit, 16-bit and 64-bit
# length encodings: 125/126, 65535/65536), echoed as sent; 1.x.8 in 997-byte chops.

_LENGTHS = [0, 125, 126, 127, 128, 65535, 65536]
for _i, _n in enumerate(_LENGTHS, 1):
    case("1.1.%d" % _i, "text message, payload length %d" % _n,
         [F(TEXT, b"*" * _n)], [msg("text", b"*" * _n)])
case("1.1.8", "text message, payload length 65536, sent in chops of 997 octets",
     [F(TEXT, b"*" * 65536, chop=997)], [msg("text", b"*" * 65536)])
for _i, _n in enumerate(_LENGTHS, 1):
    case("1.2.%d" % _i, "binary message, payload length %d" % _n,
         [F(BINARY, b"\xfe" * _n)], [msg("binary", b"\xfe" * _n)])
case("1.2.8", "binary message, payload length 65536, sent in chops of 997 octets",
     [F(BINARY, b"\xfe" * 65536, chop=997)], [msg("binary", b"\xfe" * 65536)])

# ======================================================================== group 2
# Pings and pongs (RFC 6455 5.5.2, 5.5.3).

_BIN8 = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
case("2.1", "ping without payload", [F(PING)], [pong(b"")])
case("2.2", "ping with small text payload", [F(PING, "Hello, world!")], [pong("Hello, world!")])
case("2.3", "ping with small binary (non UTF-8) payload", [F(PING, _BIN8)], [pong(_BIN8)])
case("2.4", "ping with binary payload of 125 octets", [F(PING, b"\xfe" * 125)], [pong(b"\xfe" * 125)])
# RFC 6455 5.5: all control frames MUST have a payload length of 125 bytes or less.
case("2.5", "ping with binary payload of 126 octets: protocol error",
     [F(PING, b"\xfe" * 126)], [], FAIL(1002))
case("2.6", "ping with 125 octets, sent in octet-wise chops",
     [F(PING, b"\xfe" * 125, chop=1)], [pong(b"\xfe" * 125)])
# RFC 6455 5.5.3: an unsolicited Pong is a unidirectional heartbeat; no response expected.
case("2.7", "unsolicited pong without payload", [F(PONG)], [])
case("2.8", "unsolicited pong with payload", [F(PONG, "unsolicited pong payload")], [])
case("2.9", "unsolicited pong, then ping: only the ping is answered",
     [F(PONG, "unsolicited pong payload"), F(PING, "ping payload")], [pong("ping payload")])
# RFC 6455 5.5.3 lets an endpoint answer only the most recent of several pings; Autobahn
# (and this suite) expects a pong for each.
case("2.10", "10 pings with payload", [F(PING, "payload-%d" % i) for i in range(10)],
     [pong("payload-%d" % i) for i in range(10)])
case("2.11", "10 pings with payload, sent in octet-wise chops",
     [F(PING, "payload-%d" % i, chop=1) for i in range(10)], [pong("payload-%d" % i) for i in range(10)])

# ======================================================================== group 3
# Reserved bits (RFC 6455 5.2: RSV1-3 MUST be 0 unless an extension defines them;
# none was negotiated, so the receiver MUST fail the connection).

_HW = "Hello, world!"
case("3.1", "text message with RSV = 1", [F(TEXT, _HW, rsv=1)], [], FAIL(1002))
case("3.2", "text, then text with RSV = 2, then ping: first echoed, then failed, no pong",
     [F(TEXT, _HW), F(TEXT, _HW, rsv=2), F(PING)], [msg("text", _HW)], FAIL(1002))
case("3.3", "as 3.2 with RSV = 3, frame-wise chops",
     [F(TEXT, _HW, sync=True), F(TEXT, _HW, rsv=3, sync=True), F(PING, sync=True)],
     [msg("text", _HW)], FAIL(1002))
case("3.4", "as 3.2 with RSV = 4, octet-wise chops",
     [F(TEXT, _HW, chop=1), F(TEXT, _HW, rsv=4, chop=1), F(PING, chop=1)],
     [msg("text", _HW)], FAIL(1002))
case("3.5", "binary message with RSV = 5", [F(BINARY, _BIN8, rsv=5)], [], FAIL(1002))
# Autobahn's description says "Ping with RSV = 6" (its code sends a binary frame); we send
# the ping the description names. The RSV rule is the same for control frames.
case("3.6", "ping with RSV = 6", [F(PING, _HW, rsv=6)], [], FAIL(1002))
case("3.7", "close with RSV = 7", [F(CLOSE, rsv=7)], [], FAIL(1002))

# ======================================================================== group 4
# Reserved opcodes (RFC 6455 5.2: 3-7 and 0xB-0xF are reserved; receiving one fails
# the connection).

_ROP = "reserved opcode payload"
case("4.1.1", "frame with reserved non-control opcode 3", [F(3)], [], FAIL(1002))
case("4.1.2", "reserved non-control opcode 4 with payload", [F(4, _ROP)], [], FAIL(1002))
case("4.1.3", "text, then reserved opcode 5, then ping: echo, then failed, no pong",
     [F(TEXT, _HW), F(5), F(PING)], [msg("text", _HW)], FAIL(1002))
case("4.1.4", "text, then reserved opcode 6 with payload, then ping",
     [F(TEXT, _HW), F(6, _ROP), F(PING)], [msg("text", _HW)], FAIL(1002))
case("4.1.5", "text, then reserved opcode 7 with payload, then ping; octet-wise chops",
     [F(TEXT, _HW, chop=1), F(7, _HW, chop=1), F(PING, chop=1)], [msg("text", _HW)], FAIL(1002))
case("4.2.1", "frame with reserved control opcode 11", [F(11)], [], FAIL(1002))
case("4.2.2", "reserved control opcode 12 with payload", [F(12, _ROP)], [], FAIL(1002))
case("4.2.3", "text, then reserved opcode 13, then ping",
     [F(TEXT, _HW), F(13), F(PING)], [msg("text", _HW)], FAIL(1002))
case("4.2.4", "text, then reserved opcode 14 with payload, then ping",
     [F(TEXT, _HW), F(14, _ROP), F(PING)], [msg("text", _HW)], FAIL(1002))
case("4.2.5", "text, then reserved opcode 15 with payload, then ping; octet-wise chops",
     [F(TEXT, _HW, chop=1), F(15, _HW, chop=1), F(PING, chop=1)], [msg("text", _HW)], FAIL(1002))

# ======================================================================== group 5
# Fragmentation (RFC 6455 5.4): control frames MUST NOT be fragmented; control frames
# MAY be injected between fragments; a continuation needs a message to continue, and a
# new data frame MUST NOT start inside a fragmented message.

case("5.1", "ping fragmented into 2 fragments",
     [F(PING, "fragment1", fin=False), F(CONT, "fragment2")], [], FAIL(1002))
case("5.2", "pong fragmented into 2 fragments",
     [F(PONG, "fragment1", fin=False), F(CONT, "fragment2")], [], FAIL(1002))


def _two_frags(**kw):
    return [F(TEXT, "fragment1", fin=False, **kw), F(CONT, "fragment2", **kw)]


case("5.3", "text message in 2 fragments", _two_frags(), [msg("text", "fragment1fragment2")])
case("5.4", "text message in 2 fragments, frame-wise chops", _two_frags(sync=True),
     [msg("text", "fragment1fragment2")])
case("5.5", "text message in 2 fragments, octet-wise chops", _two_frags(chop=1),
     [msg("text", "fragment1fragment2")])


def _ping_between(**kw):
    return [F(TEXT, "fragment1", fin=False, **kw), F(PING, "ping payload", **kw),
            F(CONT, "fragment2", **kw)]


_PB = [pong("ping payload"), msg("text", "fragment1fragment2")]
case("5.6", "text in 2 fragments with a ping in between: pong, then the message", _ping_between(), _PB)
case("5.7", "as 5.6, frame-wise chops", _ping_between(sync=True), _PB)
case("5.8", "as 5.6, octet-wise chops", _ping_between(chop=1), _PB)


def _nothing_to_continue(fin, **kw):
    return [F(CONT, "non-continuation payload", fin=fin, **kw), F(TEXT, _HW, **kw)]


case("5.9", "continuation (FIN) with nothing to continue, then text",
     _nothing_to_continue(True), [], FAIL(1002))
case("5.10", "as 5.9, frame-wise chops", _nothing_to_continue(True, sync=True), [], FAIL(1002))
case("5.11", "as 5.9, octet-wise chops", _nothing_to_continue(True, chop=1), [], FAIL(1002))
case("5.12", "continuation (no FIN) with nothing to continue, then text",
     _nothing_to_continue(False), [], FAIL(1002))
case("5.13", "as 5.12, frame-wise chops", _nothing_to_continue(False, sync=True), [], FAIL(1002))
case("5.14", "as 5.12, octet-wise chops", _nothing_to_continue(False, chop=1), [], FAIL(1002))
case("5.15", "text in 2 fragments, then continuation with nothing to continue, then text",
     [F(TEXT, "fragment1", fin=False), F(CONT, "fragment2"), F(CONT, "fragment3", fin=False),
      F(TEXT, "fragment4")], [msg("text", "fragment1fragment2")], FAIL(1002))
case("5.16", "2x: continuation (no FIN) with nothing to continue, then text in 2 fragments",
     [F(CONT, "fragment1", fin=False), F(TEXT, "fragment2", fin=False), F(CONT, "fragment3")] * 2,
     [], FAIL(1002))
case("5.17", "2x: continuation (FIN) with nothing to continue, then text in 2 fragments",
     [F(CONT, "fragment1"), F(TEXT, "fragment2", fin=False), F(CONT, "fragment3")] * 2,
     [], FAIL(1002))
case("5.18", "text in 2 fragments, both with the text opcode",
     [F(TEXT, "fragment1", fin=False), F(TEXT, "fragment2")], [], FAIL(1002))


def _five_frags(sync):
    fr = ["fragment%d" % i for i in range(1, 6)]
    return [F(TEXT, fr[0], fin=False, sync=sync), F(CONT, fr[1], fin=False, sync=sync),
            F(PING, "pongme 1!", sync=sync),
            # The first pong must come while the message is still incomplete.
            WAIT_EVENTS(1), SLEEP(1.0),
            F(CONT, fr[2], fin=False, sync=sync), F(CONT, fr[3], fin=False, sync=sync),
            F(PING, "pongme 2!", sync=sync), F(CONT, fr[4], sync=sync)]


_FF = [pong("pongme 1!"), pong("pongme 2!"), msg("text", "".join("fragment%d" % i for i in range(1, 6)))]
case("5.19", "text in 5 fragments, pings after 2 and 4; the first pong before the message ends",
     _five_frags(False), _FF)
case("5.20", "as 5.19, frame-wise chops", _five_frags(True), _FF)

# ======================================================================== group 6
# UTF-8 handling (RFC 6455 5.6: text payload is UTF-8; 8.1: invalid UTF-8 fails the
# connection; 7.4.1: the code for that is 1007).

case("6.1.1", "empty text message", [F(TEXT, b"")], [msg("text", b"")])
case("6.1.2", "text message in 3 empty fragments",
     [F(TEXT, b"", fin=False), F(CONT, b"", fin=False), F(CONT, b"")], [msg("text", b"")])
case("6.1.3", "text in 3 fragments, first and last empty",
     [F(TEXT, b"", fin=False), F(CONT, "middle frame payload", fin=False), F(CONT, b"")],
     [msg("text", "middle frame payload")])

_HELLO_UTF8 = "Hello-µ@ßöäüàá-UTF-8!!".encode("utf-8")
_KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"      # κόσμε


def _octet_frags(opcode, payload):
    n = len(payload)
    return [F(opcode if i == 0 else CONT, payload[i:i + 1], fin=i == n - 1) for i in range(n)]


case("6.2.1", "valid UTF-8 text in one fragment", [F(TEXT, _HELLO_UTF8)], [msg("text", _HELLO_UTF8)])
case("6.2.2", "valid UTF-8 text in 2 fragments, split on a code point boundary",
     [F(TEXT, "Hello-µ@ßöä", fin=False), F(CONT, "üàá-UTF-8!!")], [msg("text", _HELLO_UTF8)])
case("6.2.3", "valid UTF-8 text in 1-octet fragments (frames end inside code points)",
     _octet_frags(TEXT, _HELLO_UTF8), [msg("text", _HELLO_UTF8)])
case("6.2.4", "valid UTF-8 text (κόσμε) in 1-octet fragments",
     _octet_frags(TEXT, _KOSME), [msg("text", _KOSME)])

_INV = _KOSME + b"\xed\xa0\x80" + b"edited"    # a UTF-16 surrogate (U+D800) in the middle
case("6.3.1", "invalid UTF-8 text in one frame", [F(TEXT, _INV)], [], FAIL(1007))
case("6.3.2", "invalid UTF-8 text in 1-octet fragments", _octet_frags(TEXT, _INV), [], FAIL(1007))

# 6.4: fail fast. PART2 makes the message invalid (f4 90 80 80 encodes 0x110000, past
# U+10FFFF; the \x90 after \xf4 is already impossible). The server must fail the
# connection as soon as it has that octet, not when the message (or frame) is complete:
# after PART1 it must stay quiet; after PART2 the close must come before PART3 is sent.
_P1, _P2, _P3 = _KOSME, b"\xf4\x90\x80\x80", b"edited"
_P = _P1 + _P2 + _P3


def _fail_fast_frames(a, b, c):
    return [F(TEXT, a, fin=False), QUIET(1.0, "after the valid first part"),
            F(CONT, b, fin=False), CLOSED_WITHIN(FAST_WAIT, "after the invalid octet"),
            F(CONT, c)]


def _fail_fast_chops(a, b, c):
    """One frame whose (masked) bytes go out in three pieces."""
    def acts():
        frame = build_frame(TEXT, a + b + c)
        hdr = len(frame) - len(a + b + c)
        i, j = hdr + len(a), hdr + len(a) + len(b)
        return [RAW(frame[:i]), QUIET(1.0, "after the valid first part"),
                RAW(frame[i:j]), CLOSED_WITHIN(FAST_WAIT, "after the invalid octet"),
                RAW(frame[j:])]
    return acts


case("6.4.1", "invalid text in 3 frames, the 2nd makes it invalid: fail fast",
     _fail_fast_frames(_P1, _P2, _P3), [], FAIL(1007))
case("6.4.2", "as 6.4.1, the 2nd frame holds only the octet that makes it invalid",
     _fail_fast_frames(_P[:12], _P[12:13], _P[13:]), [], FAIL(1007))
case("6.4.3", "as 6.4.1, but 3 chops of one frame: fail fast inside the frame",
     _fail_fast_chops(_P1, _P2, _P3), [], FAIL(1007))
case("6.4.4", "as 6.4.2, but 3 chops of one frame",
     _fail_fast_chops(_P[:12], _P[12:13], _P[13:]), [], FAIL(1007))


def _utf8_sequences():
    """Autobahn's 6.5-6.23 payloads: Markus Kuhn's UTF-8 decoder stress test and more.

    Each entry is (title, [(valid, payload), ...]). The validity flags are checked
    against Python's strict codec below, so a typo here cannot make a case wrong.
    """
    seqs = []
    seqs.append(("Some valid UTF-8 sequences", [
        (True, b"hello\x24world"), (True, b"hello\xc2\xa2world"), (True, b"hello\xe2\x82\xacworld"),
        (True, b"hello\xf0\xa4\xad\xa2world"), (True, _KOSME)]))
    # Every prefix of κόσμε: valid only where it ends on a code point boundary.
    seqs.append(("All prefixes of a valid UTF-8 string with multi-byte code points",
                 [(valid_utf8(_KOSME[:i]), _KOSME[:i]) for i in range(1, len(_KOSME) + 1)]))
    seqs.append(("First possible sequence of a certain length", [
        (True, b"\x00"), (True, b"\xc2\x80"), (True, b"\xe0\xa0\x80"), (True, b"\xf0\x90\x80\x80")]))
    seqs.append(("First possible sequence length 5/6 (invalid code points)", [
        (False, b"\xf8\x88\x80\x80\x80"), (False, b"\xfc\x84\x80\x80\x80\x80")]))
    seqs.append(("Last possible sequence of a certain length", [
        (True, b"\x7f"), (True, b"\xdf\xbf"), (True, b"\xef\xbf\xbf"), (True, b"\xf4\x8f\xbf\xbf")]))
    seqs.append(("Last possible sequence length 4/5/6 (invalid code points)", [
        (False, b"\xf7\xbf\xbf\xbf"), (False, b"\xfb\xbf\xbf\xbf\xbf"), (False, b"\xfd\xbf\xbf\xbf\xbf\xbf")]))
    seqs.append(("Other boundary conditions", [
        (True, b"\xed\x9f\xbf"), (True, b"\xee\x80\x80"), (True, b"\xef\xbf\xbd"),
        (True, b"\xf4\x8f\xbf\xbf"), (False, b"\xf4\x90\x80\x80")]))
    seqs.append(("Unexpected continuation bytes", [
        (False, b"\x80"), (False, b"\xbf"), (False, b"\x80\xbf"), (False, b"\x80\xbf\x80"),
        (False, b"\x80\xbf\x80\xbf"), (False, b"\x80\xbf\x80\xbf\x80"),
        (False, b"\x80\xbf\x80\xbf\x80\xbf"), (False, bytes(range(0x80, 0xbf)))]))
    # Lonely start bytes, each followed by a space (ranges end-exclusive, as in Autobahn).
    seqs.append(("Lonely start characters", [
        (False, b"".join(bytes([b, 0x20]) for b in range(lo, hi)))
        for lo, hi in [(0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb), (0xfc, 0xfd)]]))
    missing = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80", b"\xfc\x80\x80\x80\x80",
               b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    seqs.append(("Sequences with last continuation byte missing", [(False, m) for m in missing]))
    seqs.append(("Concatenation of incomplete sequences", [(False, b"".join(missing))]))
    seqs.append(("Impossible bytes", [(False, b"\xfe"), (False, b"\xff"), (False, b"\xfe\xfe\xff\xff")]))
    seqs.append(("Examples of an overlong ASCII character", [
        (False, b"\xc0\xaf"), (False, b"\xe0\x80\xaf"), (False, b"\xf0\x80\x80\xaf"),
        (False, b"\xf8\x80\x80\x80\xaf"), (False, b"\xfc\x80\x80\x80\x80\xaf")]))
    seqs.append(("Maximum overlong sequences", [
        (False, b"\xc1\xbf"), (False, b"\xe0\x9f\xbf"), (False, b"\xf0\x8f\xbf\xbf"),
        (False, b"\xf8\x87\xbf\xbf\xbf"), (False, b"\xfc\x83\xbf\xbf\xbf\xbf")]))
    seqs.append(("Overlong representation of the NUL character", [
        (False, b"\xc0\x80"), (False, b"\xe0\x80\x80"), (False, b"\xf0\x80\x80\x80"),
        (False, b"\xf8\x80\x80\x80\x80"), (False, b"\xfc\x80\x80\x80\x80\x80")]))
    seqs.append(("Single UTF-16 surrogates", [(False, s) for s in [
        b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf",
        b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf"]]))
    seqs.append(("Paired UTF-16 surrogates", [(False, s) for s in [
        b"\xed\xa0\x80\xed\xb0\x80", b"\xed\xa0\x80\xed\xbf\xbf", b"\xed\xad\xbf\xed\xb0\x80",
        b"\xed\xad\xbf\xed\xbf\xbf", b"\xed\xae\x80\xed\xb0\x80", b"\xed\xae\x80\xed\xbf\xbf",
        b"\xed\xaf\xbf\xed\xb0\x80", b"\xed\xaf\xbf\xed\xbf\xbf"]]))
    # Non-characters are valid UTF-8 (RFC 3629): U+FFFE, U+FFFF and U+nFFFE/U+nFFFF for
    # planes 1-16 (skipping the two overlong forms F0 8F BF BE/BF).
    nonchars = [b"\xef\xbf\xbe", b"\xef\xbf\xbf"]
    for z1 in [0xf0, 0xf1, 0xf2, 0xf3, 0xf4]:
        for z2 in [0x8f, 0x9f, 0xaf, 0xbf]:
            if z1 == 0xf4 and z2 != 0x8f:
                continue  # past U+10FFFF
            for z3 in [0xbe, 0xbf]:
                s = bytes([z1, z2, 0xbf, z3])
                if s not in (b"\xf0\x8f\xbf\xbe", b"\xf0\x8f\xbf\xbf"):
                    nonchars.append(s)
    seqs.append(("Non-character code points (valid UTF-8)", [(True, s) for s in nonchars]))
    seqs.append(("Unicode specials (i.e. replacement char)", [(True, s) for s in [
        b"\xef\xbf\xb9", b"\xef\xbf\xba", b"\xef\xbf\xbb", b"\xef\xbf\xbc",
        b"\xef\xbf\xbd", b"\xef\xbf\xbe", b"\xef\xbf\xbf"]]))
    for title, entries in seqs:
        for valid, payload in entries:
            assert valid == valid_utf8(payload), (title, payload)
    return seqs


for _g, (_title, _entries) in enumerate(_utf8_sequences(), 5):
    for _j, (_valid, _payload) in enumerate(_entries, 1):
        if _valid:
            case("6.%d.%d" % (_g, _j), "%s: valid, echoed: %s" % (_title, _payload.hex()),
                 [F(TEXT, _payload)], [msg("text", _payload)])
        else:
            case("6.%d.%d" % (_g, _j), "%s: invalid, 1007: %s" % (_title, _payload.hex()),
                 [F(TEXT, _payload)], [], FAIL(1007))

# ======================================================================== group 7
# Close handling (RFC 6455 5.5.1, 7.4).

case("7.1.1", "text message, then normal close: echo, then clean close",
     [F(TEXT, "Hello World!")], [msg("text", "Hello World!")])
case("7.1.2", "two close frames: the second is ignored",
     [RAW(build_frame(CLOSE, close_payload(1000)) + build_frame(CLOSE), has_close=True)], [], REPLY(1000))
# RFC 6455 5.5.1: after sending a Close frame the endpoint MUST NOT send more data
# frames, and the server replies to our close and ignores what follows it.
case("7.1.3", "close, then ping: no pong",
     [RAW(build_frame(CLOSE, close_payload(1000)) + build_frame(PING), has_close=True)], [], REPLY(1000))
case("7.1.4", "close, then text: not echoed",
     [RAW(build_frame(CLOSE, close_payload(1000)) + build_frame(TEXT, "Hello World!"),
         has_close=True)], [], REPLY(1000))
# A control frame (the close) may come between fragments (RFC 6455 5.4).
case("7.1.5", "first fragment, close, last fragment: clean close, no message",
     [RAW(build_frame(TEXT, "fragment1", fin=False) + build_frame(CLOSE, close_payload(1000))
          + build_frame(CONT, "fragment2"), has_close=True)], [], REPLY(1000))
# Autobahn marks 7.1.6 informational: whether the messages queued before the close are
# echoed is up to the implementation, so any in-order prefix passes; the close must be clean.
_BIG = (b"BAsd7&jh23" * 26215)[:256 * 1024]
case("7.1.6", "256 KiB text, small text, close, ping (informational message outcome)",
     [RAW(build_frame(TEXT, _BIG) + build_frame(TEXT, "Hello World!")
          + build_frame(CLOSE, close_payload(1000)) + build_frame(PING), has_close=True)],
     close=REPLY(1000),
     expect_any=[[], [msg("text", _BIG)], [msg("text", _BIG), msg("text", "Hello World!")]])

# 7.3: close frame payload length. An empty close carries no code; the reply may be empty
# or 1000 (RFC 6455 5.5.1: "typically echos the status code it received").
case("7.3.1", "close with payload length 0", [CLOSE_FRAME()], [], REPLY(1000, None))
# RFC 6455 5.5.1: a close body, if present, starts with a 2-byte code; 1 byte is malformed.
case("7.3.2", "close with payload length 1: protocol error", [CLOSE_FRAME(raw_payload=b"a")],
     [], REPLY(1002))
case("7.3.3", "close with payload length 2 (code 1000)", [CLOSE_FRAME(1000)], [], REPLY(1000))
case("7.3.4", "close with code and reason", [CLOSE_FRAME(1000, "Hello World!")], [], REPLY(1000))
case("7.3.5", "close with code and a 123-byte reason (maximum)", [CLOSE_FRAME(1000, "*" * 123)],
     [], REPLY(1000))
# 2 + 124 = 126 bytes: over the 125-byte control frame limit (RFC 6455 5.5).
case("7.3.6", "close with code and a 124-byte reason (payload 126): protocol error",
     [CLOSE_FRAME(1000, "*" * 124)], [], REPLY(1002))
# RFC 6455 8.1: invalid UTF-8 fails the connection; Autobahn accepts 1002 or 1007 here
# since the reason is not a message (7.4.1 defines 1007 for message data).
case("7.5.1", "close with a reason that is not valid UTF-8",
     [CLOSE_FRAME(1000, _KOSME + b"\xed\xa0\x80" + b"edited")], [], REPLY(1002, 1007))

# 7.7: valid codes (RFC 6455 7.4.1; 1012-1014 are in IANA's registry; 3000-4999 are
# for libraries/applications and private use, 7.4.2): the server replies with 1000 or
# echoes the code.
_VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                3000, 3999, 4000, 4999]
for _i, _code in enumerate(_VALID_CODES, 1):
    case("7.7.%d" % _i, "close with valid code %d" % _code, [CLOSE_FRAME(_code)], [],
         REPLY(1000, _code))
# 7.9: codes that must never be on the wire: 0-999 unused, 1004 reserved, 1005/1006/1015
# MUST NOT be set in a close frame (7.4.1), 1016-2999 unassigned protocol range, >4999 out
# of range (7.4.2). The server fails the connection with 1002.
_INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
for _i, _code in enumerate(_INVALID_CODES, 1):
    case("7.9.%d" % _i, "close with invalid code %d: protocol error" % _code,
         [CLOSE_FRAME(_code)], [], REPLY(1002))

# ======================================================================== group 9
# Limits and performance: large messages, many fragments, many chops, many round trips.
# Sizes are Autobahn's: on loopback the whole group takes about 20 s on 2 cores, so
# nothing needed scaling down. (Autobahn's 9.9/9.10 "unlimited size" cases are not in
# its default set and not here.) kaze echo's default message limit is 16 MiB, inclusive.

_MB = 1 << 20
_BIN_PATTERN = bytes(range(256))


def _text(n):
    return b"*" * n


def _binary(n):
    return (_BIN_PATTERN * (n // 256 + 1))[:n]


def _big_case(cid, desc, kind, n, frag=None, chop=None, timeout=60.0):
    opcode = TEXT if kind == "text" else BINARY
    gen = _text if kind == "text" else _binary
    case(cid, desc, lambda: [MESSAGE(opcode, gen(n), frag=frag, chop=chop)],
         lambda: [msg(kind, gen(n))], timeout=timeout)


_SIZES_9_1 = [64 * 1024, 256 * 1024, 1 * _MB, 4 * _MB, 8 * _MB, 16 * _MB]
for _i, _n in enumerate(_SIZES_9_1, 1):
    _big_case("9.1.%d" % _i, "text message of %d bytes" % _n, "text", _n)
    _big_case("9.2.%d" % _i, "binary message of %d bytes" % _n, "binary", _n)
# 4 MiB in fragments of 64 B .. 4 MiB (9.x.1 sends 65536 frames).
_FRAGS = [64, 256, 1024, 4096, 16384, 65536, 262144, 1 * _MB, 4 * _MB]
for _i, _f in enumerate(_FRAGS, 1):
    _big_case("9.3.%d" % _i, "4 MiB text message in fragments of %d bytes" % _f, "text", 4 * _MB, frag=_f)
    _big_case("9.4.%d" % _i, "4 MiB binary message in fragments of %d bytes" % _f, "binary", 4 * _MB, frag=_f)
# 1 MiB in one frame, written in chops of 64 .. 2048 octets (one send() each).
_CHOPS = [64, 128, 256, 512, 1024, 2048]
for _i, _ch in enumerate(_CHOPS, 1):
    _big_case("9.5.%d" % _i, "1 MiB text message sent in chops of %d octets" % _ch, "text", _MB, chop=_ch)
    _big_case("9.6.%d" % _i, "1 MiB binary message sent in chops of %d octets" % _ch, "binary", _MB, chop=_ch)


def _round_trips(kind, size, count):
    """9.7/9.8: send one message, wait for its echo, repeat."""
    def run(host, port, pid=None):
        opcode = TEXT if kind == "text" else BINARY
        payload = _text(size) if kind == "text" else _binary(size)
        frame = build_frame(opcode, payload, mask_key=b"\x01\x02\x03\x04")
        conn = Conn(host, port, timeout=60.0)
        try:
            conn.connect()
            conn.handshake()
            for i in range(count):
                conn.send_raw(frame)
                if not conn.wait(lambda: len(data_events(conn)) > i, EVENT_WAIT):
                    return ["no echo for message %d of %d within %.0f s (%s)"
                            % (i + 1, count, EVENT_WAIT, conn.describe_end())]
            evs = data_events(conn)
            bad = [j for j, e in enumerate(evs) if e != ("message", kind, payload)]
            problems = ["protocol violation: " + v for v in conn.violations]
            if bad:
                problems.append("echo %d differs: %s" % (bad[0], describe_event(evs[bad[0]])))
            conn.send_close(1000)
            conn.wait(lambda: conn.close_received, CLOSE_WAIT)
            conn.wait_tcp_end(CLOSE_WAIT)
            if not conn.close_received or conn.close_code not in (1000, None) or conn.tcp_end != "eof":
                problems.append("close: %s" % conn.describe_end())
            return problems
        except (OSError, HandshakeError, Timeout) as e:
            return ["%s (%s)" % (e, conn.describe_end())]
        finally:
            conn.close_socket()
    return run


for _i, _n in enumerate([0, 16, 64, 256, 1024, 4096], 1):
    case("9.7.%d" % _i, "1000 text messages of %d bytes, one round trip each" % _n,
         run=_round_trips("text", _n, 1000))
    case("9.8.%d" % _i, "1000 binary messages of %d bytes, one round trip each" % _n,
         run=_round_trips("binary", _n, 1000))

# ======================================================================= group 10
case("10.1.1", "65536-byte text message auto-fragmented into 1300-byte frames",
     [MESSAGE(TEXT, b"*" * 65536, frag=1300)], [msg("text", b"*" * 65536)])


# ====================================================================== hs: handshake

def _http_case(build, expect_status, check_headers=None, then_echo=False):
    """Send a hand-made opening handshake; check the status and headers."""
    def run(host, port, pid=None):
        conn = Conn(host, port)
        try:
            conn.connect()
            key, req = build(conn)
            conn.send_raw(req, stop_on_close=False)
            status, headers, _ = conn.read_http_response(time.monotonic() + EVENT_WAIT)
            problems = []
            if status not in expect_status:
                problems.append("status %d, expected %s; response %s" % (
                    status, " or ".join(map(str, expect_status)), short(conn.resp_raw, 300)))
                return problems
            if check_headers:
                problems += check_headers(key, headers)
            if status != 101 and "close" in headers.get("connection", "").lower():
                # RFC 7230 6.6: a server that sends "Connection: close" MUST close after
                # the response.
                conn.wait_tcp_end(CLOSE_WAIT)
                if conn.tcp_end != "eof":
                    problems.append("said 'Connection: close' but TCP %s" % (
                        "was reset" if conn.tcp_end else "stayed open for %.0f s" % CLOSE_WAIT))
            if then_echo:
                conn._parse()
                conn.send_frame(TEXT, "after handshake")
                if not conn.wait(lambda: data_events(conn), EVENT_WAIT) or \
                        data_events(conn) != [msg("text", "after handshake")]:
                    problems.append("no echo after the handshake: %s, %s"
                                    % (describe_events(data_events(conn)), conn.describe_end()))
            return problems
        except (OSError, HandshakeError, Timeout) as e:
            return ["%s" % e]
        finally:
            conn.close_socket()
    return run


def _accepts(key, h):
    p = []
    if h.get("sec-websocket-accept") != accept_value(key):
        p.append("Sec-WebSocket-Accept %r, expected %r" % (h.get("sec-websocket-accept"), accept_value(key)))
    if h.get("upgrade", "").lower() != "websocket":
        p.append("Upgrade header %r" % h.get("upgrade"))
    return p


def _req(**kw):
    return lambda conn: conn.request(**kw)


case("hs.1", "valid handshake: 101 with the right Sec-WebSocket-Accept",
     run=_http_case(_req(), [101], _accepts, then_echo=True))
# RFC 6455 4.2.1 items 3 and 4: "websocket" and "Upgrade" are case-insensitive, and
# Connection is a token list.
case("hs.2", "valid handshake: 'Upgrade: WebSocket', 'Connection: keep-alive, Upgrade'",
     run=_http_case(lambda c: c.request(omit=("Upgrade", "Connection"), extra_headers=[
         ("Upgrade", "WebSocket"), ("Connection", "keep-alive, Upgrade")]), [101], _accepts,
         then_echo=True))
# RFC 6455 4.2.1: a handshake that does not match -> an error such as 400. A missing
# Upgrade may also be answered with 426 Upgrade Required (RFC 7231 6.5.15).
case("hs.3", "no Upgrade header: rejected (400)",
     run=_http_case(_req(omit=("Upgrade",)), [400, 426]))
case("hs.4", "Connection header without the Upgrade token: rejected (400)",
     run=_http_case(lambda c: c.request(omit=("Connection",), extra_headers=[("Connection", "keep-alive")]),
                    [400, 426]))
# RFC 6455 4.2.1 item 5: the key must decode to 16 bytes; this one decodes to 8.
case("hs.5", "Sec-WebSocket-Key that decodes to 8 bytes: 400",
     run=_http_case(_req(key="AAAAAAAAAAA="), [400]))
case("hs.6", "Sec-WebSocket-Key that is not base64: 400",
     run=_http_case(_req(key="not base64 at all!!!!!!="), [400]))
case("hs.7", "no Sec-WebSocket-Key: 400", run=_http_case(_req(omit=("Sec-WebSocket-Key",)), [400]))


def _version_header(key, h):
    # RFC 6455 4.2.2 item 4 / 4.4: answer an unsupported version with the versions we do speak.
    v = [x.strip() for x in h.get("sec-websocket-version", "").split(",")]
    return [] if "13" in v else ["426 without 'Sec-WebSocket-Version: 13' (got %r)"
                                 % h.get("sec-websocket-version")]


case("hs.8", "Sec-WebSocket-Version: 8: 426 with Sec-WebSocket-Version: 13",
     run=_http_case(_req(version="8"), [426], _version_header))


def _allow_get(key, h):
    # RFC 7231 6.5.5: a 405 response MUST carry an Allow header.
    allow = [x.strip().upper() for x in h.get("allow", "").split(",")]
    return [] if "GET" in allow else ["405 without 'Allow: GET' (got %r)" % h.get("allow")]


# RFC 6455 4.2.1 item 1: the handshake is a GET.
case("hs.9", "POST: 405 with Allow: GET", run=_http_case(_req(method="POST"), [405], _allow_get))


def _padded(total):
    """A valid request padded with an X-Filler header to `total` bytes."""
    def build(conn):
        key, base = conn.request()
        fill = total - len(base) - len("X-Filler: \r\n")
        return conn.request(key=key, extra_headers=[("X-Filler", "a" * fill)])
    return build


# kaze echo's default --max-header is 8K for the request head (RFC 6585 4: 431).
case("hs.10", "request head of 9000 bytes (over the 8 KiB limit): 431", run=_http_case(_padded(9000), [431]))
case("hs.11", "request head of 8000 bytes (under the limit): 101",
     run=_http_case(_padded(8000), [101], _accepts, then_echo=True))


# ================================================================ sub: subprotocols
# RFC 6455 4.2.2 /subprotocol/: one of the client's values, or none. kaze echo picks
# the first of the client's offers (listed by preference, 4.2.1 item 8) that it accepts.

def _proto(expected):
    def chk(key, h):
        got = h.get("sec-websocket-protocol")
        p = _accepts(key, h)
        if got != expected:
            p.append("Sec-WebSocket-Protocol %r, expected %s" % (got, "none" if expected is None else repr(expected)))
        return p
    return chk


def _sub(cid, desc, offers, expected, profile="subproto"):
    hdrs = [("Sec-WebSocket-Protocol", o) for o in offers]
    case(cid, desc, profile=profile,
         run=_http_case(lambda c: c.request(extra_headers=hdrs), [101], _proto(expected), then_echo=True))


_sub("sub.1", "offer 'superchat, chat': superchat", ["superchat, chat"], "superchat")
_sub("sub.2", "offer 'chat, superchat': chat", ["chat, superchat"], "chat")
_sub("sub.3", "offer 'foo, chat': chat", ["foo, chat"], "chat")
_sub("sub.4", "offer 'foo' only: no subprotocol, still 101", ["foo"], None)
_sub("sub.5", "no offer: no subprotocol", [], None)
# RFC 6455 11.3.4: several Sec-WebSocket-Protocol lines equal one combined list.
_sub("sub.6", "offers on two header lines 'foo' and 'superchat, chat': superchat",
     ["foo", "superchat, chat"], "superchat")
_sub("sub.7", "offer 'chat' to a server with no subprotocols: none", ["chat"], None, profile="default")


# ================================================================= pipe: pipelining

def _in_order_apart(expected):
    """Messages must come back in order and pongs in order; how the two interleave
    is the server's business (RFC 6455 5.5.3 only asks for a pong "as soon as is
    practical"), except where a message cannot be complete yet, which `expected`
    does not rely on."""
    exp_msgs = [e for e in expected if e[0] == "message"]
    exp_pongs = [e for e in expected if e[0] == "pong"]

    def match(evs):
        msgs = [e for e in evs if e[0] == "message"]
        pongs = [e for e in evs if e[0] == "pong"]
        if msgs != exp_msgs:
            return "messages: " + diff_events(exp_msgs, msgs)
        if pongs != exp_pongs:
            return "pongs: " + diff_events(exp_pongs, pongs)
        return None
    return match


def _pipeline(n, with_pings):
    sizes = [(i * 37) % 300 for i in range(n)]
    sizes[1:4] = [125, 126, 0]

    def payload(i):
        if i % 2 == 0:
            return ("m%d-" % i).encode() * (sizes[i] // 4 + 1)
        return bytes((i + k) & 0xFF for k in range(sizes[i]))

    frames, expected = [], []
    for i in range(n):
        frames.append(build_frame(TEXT if i % 2 == 0 else BINARY, payload(i)))
        expected.append(msg("text" if i % 2 == 0 else "binary", payload(i)))
        if with_pings and i % 10 == 9:
            frames.append(build_frame(PING, "p%d" % i))
            expected.append(pong("p%d" % i))
    return [RAW(b"".join(frames))], expected, _in_order_apart(expected)


for _cid, _n, _pings, _desc in [("pipe.1", 100, True, "100 text/binary messages and 10 pings in one write"),
                                ("pipe.2", 1000, False, "1000 small messages in one write")]:
    _a, _e, _m = _pipeline(_n, _pings)
    case(_cid, _desc, _a, _e, match=_m)
# 1-byte frames of one text message with pings between them, then a binary message.
_P3_FRAMES = b"".join(build_frame(TEXT if i == 0 else CONT, bytes([ch]), fin=(i == 9))
                      + (build_frame(PING, b"%d" % i) if i % 3 == 0 else b"")
                      for i, ch in enumerate(b"0123456789")) + build_frame(BINARY, b"\x00\x01")
_P3_EXPECT = [pong(b"0"), pong(b"3"), pong(b"6"), msg("text", b"0123456789"), pong(b"9"),
              msg("binary", b"\x00\x01")]
case("pipe.3", "fragmented message, pings and another message, 1-byte frames, one write",
     [RAW(_P3_FRAMES)], _P3_EXPECT, match=_in_order_apart(_P3_EXPECT))
case("pipe.4", "valid message and an invalid frame in one write: echo, then 1002",
     [RAW(build_frame(TEXT, "first") + build_frame(TEXT, "second", rsv=4) + build_frame(TEXT, "third"))],
     [msg("text", "first")], FAIL(1002))


# ====================================================================== lim: limits
# RFC 6455 10.4: an implementation with a message/frame size limit MUST protect itself;
# 7.4.1: 1009 is the code for a message too big to process. The "small" profile runs
# kaze echo --max-message 1024 (and so --max-frame 1024). The server must fail as soon as
# it knows the message is too big, not once the whole message has arrived.

case("lim.1", "message of exactly 1024 bytes (the limit): echoed", [F(BINARY, b"\xab" * 1024)],
     [msg("binary", b"\xab" * 1024)], profile="small")
case("lim.2", "1024 bytes in 2 fragments: echoed",
     [F(TEXT, b"a" * 512, fin=False), F(CONT, b"b" * 512)], [msg("text", b"a" * 512 + b"b" * 512)],
     profile="small")
case("lim.3", "frame header announcing 1025 bytes, nothing more: 1009 at once",
     [RAW(build_frame(BINARY, b"", length=1025))], [], FAIL(1009), profile="small")
case("lim.4", "non-final 1025-byte frame: 1009 before the message ends",
     [F(BINARY, b"\xab" * 1025, fin=False)], [], FAIL(1009), profile="small")
case("lim.5", "fragments of 600 + 600 bytes, the second not final: 1009 before the message ends",
     [F(TEXT, b"a" * 600, fin=False), F(CONT, b"b" * 600, fin=False)], [], FAIL(1009), profile="small")
case("lim.6", "1200 bytes in 12 fragments of 100, sent one by one: 1009 before the last",
     [F(BINARY if i == 0 else CONT, b"\xcd" * 100, fin=False, sync=True) for i in range(12)],
     [], FAIL(1009), profile="small")
case("lim.7", "2000-byte text message, then a small one: 1009, the small one not echoed",
     [F(TEXT, b"t" * 2000), F(TEXT, b"after")], [], FAIL(1009), profile="small")
case("lim.8", "default server: frame header announcing 16 MiB + 1: 1009 at once",
     [RAW(build_frame(BINARY, b"", length=16 * _MB + 1))], [], FAIL(1009))


# ================================================================ x: other framing

# RFC 6455 5.1: "The server MUST close the connection upon receiving a frame that is not
# masked ... a server MAY send a Close frame with a status code of 1002". This suite
# wants the close frame.
case("x.1", "unmasked text frame: 1002", [F(TEXT, "unmasked", mask=False)], [], FAIL(1002))
case("x.2", "masked text, then unmasked ping: echo, then 1002",
     [F(TEXT, "masked"), F(PING, "unmasked", mask=False)], [msg("text", "masked")], FAIL(1002))
# RFC 6455 5.2: with a 64-bit length "the most significant bit MUST be 0".
case("x.3", "64-bit length with the most significant bit set: 1002 (or 1009)",
     [RAW(build_frame(BINARY, b"", length=(1 << 63) + 5))], [], FAIL(1002, 1009))
case("x.4", "mask key of zeros (a legal key): echoed",
     [F(TEXT, "zero mask", mask_key=b"\0\0\0\0")], [msg("text", "zero mask")])


CASES.sort(key=Case.key)
