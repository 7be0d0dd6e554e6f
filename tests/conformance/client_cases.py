"""The client-role conformance cases: `kaze client --echo` against a test server.

client_run.py plays Autobahn's "fuzzingserver". For each case it starts

    kaze client --echo [options] ws://127.0.0.1:PORT/<case-id>

accepts the one connection it opens, checks the opening handshake request,
answers it (a valid 101, or one of many invalid answers), sends the case's
frames (unmasked, as a server must) and judges, strictly, what the client does.
The server side of the connection is wsserver.ServerConn; the frame-level cases
are those of the server-role suite (cases.py, cases_deflate.py) wherever the
case is the same with the roles turned round, so they are not written twice.

Groups (case ids match the server-role suite's where the case is the same):

  1-7, 9, 10  Autobahn's cases from cases.py: the same frames, chops and expected
              echoes, pongs and close codes (Autobahn's strict outcome). Only
              7.5.1 is stricter than there: an invalid UTF-8 close reason must
              get 1007 (RFC 6455 7.4.1: data inconsistent with its type; Kaze's
              server answers it so too), where the server-role suite also takes
              1002. 9.7/9.8 (1000 round trips) are re-expressed for the server side.
  12.j.i      permessage-deflate, Autobahn's 12.x seen from the server: the client
              offers (--compress) "permessage-deflate; client_max_window_bits", the
              server accepts it plainly and sends compressed messages of Autobahn's
              sizes and data sets (cases_deflate.py's), which must come back equal.
  13.j.i      the same on JSON with Autobahn's server answers 13.1-13.6
              (client_no_context_takeover, client_max_window_bits=8 or 15 and both;
              13.7 there falls back to 13.5's answer for this offer, so here it
              answers all four parameters instead, with windows of 9).
  hs.*        the opening handshake: valid 101 variants the client must take, and
              answers it must refuse (status not 101, Sec-WebSocket-Accept,
              Upgrade, Connection, a response head too large, garbage, TCP closed
              before the response is complete) by exiting 1 without sending a
              frame, saying on stderr what went wrong.
  sub.*       subprotocols (--subprotocol chat --subprotocol superchat): one offered
              and chosen works, none chosen works, one not offered is refused.
  pipe.*      many messages and pings in one TCP write (cases.py's).
  lim.*       message size limits, 1009 (cases.py's; "small" = --max-message 1024).
  x.*         framing rules of the client role: masked frames from a server (1002),
              fresh mask keys, the server's FIN after a delay (the client waits for
              it); and cases.py's x.3 (64-bit length with the top bit set).
  pmd.*       permessage-deflate parameters and message forms the client must
              take: every window size both ways, no context takeover either way,
              quoted values, RFC 7692's examples, empty and BFINAL-ended messages,
              compressed and uncompressed messages mixed, 16 MiB messages.
  pmdneg.*    extension answers the client must refuse: one it did not offer,
              invalid parameters or values (RFC 7692 7.1); and RSV1 when no
              extension was agreed (1002).
  pmderr.*    cases_deflate.py's pmderr cases: RSV1 on continuation and control
              frames (1002), corrupt DEFLATE data and invalid UTF-8 after inflating
              (1007), limits on the inflated size and decompression bombs (1009,
              the client's memory checked).
  cli.*       usage errors: exit status 2 without connecting.

Where the client may choose, any choice passes: it may send any message
uncompressed (RSV1 clear) under permessage-deflate, and may send a pong before
an echo that was due earlier where the case's order does not depend on it.

How every case is judged:

  request     GET /<case-id> HTTP/1.1 with exactly one Host: 127.0.0.1:PORT,
              Upgrade: websocket, Connection: Upgrade, a fresh Sec-WebSocket-Key
              (base64 of 16 bytes, never the same twice), Sec-WebSocket-Version: 13,
              the subprotocols and --header lines asked for, and with --compress
              exactly the offer "permessage-deflate; client_max_window_bits", else
              no extension offer (RFC 6455 4.1); nothing sent behind the request
              before the answer.
  frames      every client frame masked, with a mask key not always the same
              (RFC 6455 5.1, 5.3), no RSV bit except RSV1 on the first frame of a
              data message under permessage-deflate (5.2, RFC 7692 6.1), minimal
              length encoding (5.2), control frames of at most 125 bytes and
              unfragmented (5.5), valid UTF-8 text, valid close codes (7.4),
              nothing after its close frame (5.5.1), compressed messages that
              inflate with the agreed window and context takeover (RFC 7692 7.2).
  the end     NORMAL: once the expected echoes are in, the server sends close 1000
              and the client answers 1000 (or with no code). FAIL(codes): the
              client fails the connection with a close frame of one of codes
              (RFC 6455 7.1.7), the server answers it. REPLY(codes): the server's
              close was among the case's actions; the client answers with one of
              codes. Then the server closes TCP (its FIN first, RFC 6455 7.1.1),
              and the client must close its side in turn, cleanly (FIN, no RST);
              with REQUIRE_SERVER_CLOSES_FIRST it must not have closed first
              (5.5.1: the client SHOULD wait for the server's FIN; checked by which
              side holds TIME_WAIT).
  exit status 0 after a close handshake with 1000, 1001 or no code, 1 when the client
              failed the connection, the server's code was another one, or the
              handshake failed (the `kaze client` contract); the process must end
              within EXIT_WAIT of the connection.
"""

import base64
import functools
import hashlib
import random
import re
import signal
import sys
import time

if "cases" in sys.modules:
    raise ImportError("client_cases must be imported before cases: the cases' frames are built "
                      "at import time and must be built unmasked (server role)")

import wsclient  # noqa: E402

wsclient.MASK_FRAMES = False  # the server's frames are never masked (RFC 6455 5.1)

import cases  # noqa: E402
import cases_deflate  # noqa: E402,F401  (adds its pmderr cases to cases.CASES, reused below)
from cases import (CLOSE_WAIT, EVENT_WAIT, FAIL, FAIL_WAIT, NORMAL, REPLY, F, data_events,  # noqa: E402
                   describe_events, diff_events, msg, pong)
from cases_deflate import (CRAFT, DATA_SETS, KIB, MIB, MIN_COUNT, MSG_SIZES, RSS_LIMIT, _bitmap,  # noqa: E402
                           _compare, _json, _KZ, _messages, _msgs_then_pongs, _PING_EXPECT, _PING_FRAGS,
                           _PN_EMPTY, _probe_msgs, _prose, _random, _status, _utf8_fix, autobahn_messages)
from wsclient import (BINARY, CLOSE, CONT, PING, PMD, TEXT, HandshakeError, Timeout,  # noqa: E402
                      accept_value, build_frame, check_pmd_answer, close_payload, deflate_raw, new_key,
                      parse_extensions, short)
from wsserver import ACTIVE_CLOSE_STATES, ServerConn, http_head, key_problem, response_101  # noqa: E402

# Waits (seconds). Generous: on loopback everything takes microseconds, but a client
# run under a sanitizer or valgrind starts slowly.
ACCEPT_WAIT = 10.0    # from starting the client to its connection
REQUEST_WAIT = 5.0    # for its request head
REFUSE_WAIT = 5.0     # for it to close TCP after an answer it must refuse
EXIT_WAIT = 5.0       # for the process to end once the connection has ended

# RFC 6455 5.5.1/7.1.1: after the close handshake "the client SHOULD wait for the
# server to close the connection" (so the server holds TIME_WAIT). When true, a client
# that closed TCP before the server's FIN fails the case.
REQUIRE_SERVER_CLOSES_FIRST = True

# What `kaze client --compress` offers, exactly (the browsers' offer).
OFFER = PMD + "; client_max_window_bits"
PROTOCOLS = ["chat", "superchat"]

# Client options per profile, after --echo (cf. run.py's PROFILES for kaze echo).
PROFILES = {
    "default": [],
    "small": ["--max-message", "1024"],
    "subproto": ["--subprotocol", "chat", "--subprotocol", "superchat"],
    "compress": ["--compress"],
    "compress-1m": ["--compress", "--max-message", "1048576"],
}

# Sec-WebSocket-Key nonces already seen: each must be fresh (RFC 6455 4.1 item 7).
_SEEN_KEYS = set()


# ------------------------------------------------------------------ cases

class CCase:
    """One client-role case.

    Frame cases (run is None) answer the handshake with a 101 (or `response`), run
    `actions` (cases.py's actions work unchanged on a ServerConn) and expect the
    events `expect` (or one of `expect_any`, or what `match` accepts) and the end
    `close`. A `run` function does the whole exchange itself: run(session) ->
    problems, setting session.expect_exit and, for refusals, session.expect_stderr.

    answer    the server's Sec-WebSocket-Extensions value, or None
    protocol  the server's Sec-WebSocket-Protocol value, or None
    response  session -> bytes: the whole answer (head, and frames right behind it)
    chop      send the answer in pieces of this many bytes
    after     session -> problems, run once the close frame is in, before TCP ends
    exit      the client's exit status; None: from `close` (see expected_exit)
    connects  False: a command line that must not connect; `args` are then the whole
              command line after `kaze client`, "{url}" standing for the case's URL
    """

    def __init__(self, cid, desc, actions=(), expect=(), close=NORMAL, profile="default", args=(),
                 answer=None, protocol=None, response=None, chop=None, timeout=EVENT_WAIT,
                 expect_any=None, match=None, run=None, after=None, exit=None, connects=True):
        self.id, self.desc = cid, desc
        self.actions, self.expect, self.close = actions, expect, close
        self.profile = profile
        self.args = list(PROFILES[profile]) + list(args)
        self.answer, self.protocol, self.response, self.chop = answer, protocol, response, chop
        self.timeout = timeout
        self.expect_any, self.match = expect_any, match
        self.run, self.after, self.exit = run, after, exit
        self.connects = connects
        self.info = ""

    def key(self):
        """Autobahn's numeric groups first, in numeric order, then the extra groups."""
        parts = self.id.split(".")
        if parts[0].isdigit():
            return (0, 0, tuple(int(p) for p in parts))
        return (1, EXTRA_GROUPS.index(parts[0]), tuple(int(p) for p in parts[1:]))


EXTRA_GROUPS = ["hs", "sub", "pipe", "lim", "x", "pmd", "pmdneg", "pmderr", "cli"]
CASES = []


def case(*a, **kw):
    c = CCase(*a, **kw)
    assert all(o.id != c.id for o in CASES), c.id
    CASES.append(c)
    return c


def from_server_case(c, desc=None, **over):
    """A cases.py case, as it is, for the client role; `over` replaces attributes."""
    kw = dict(actions=c.actions, expect=c.expect, close=c.close, profile=c.profile, timeout=c.timeout,
              expect_any=c.expect_any, match=c.match)
    kw.update(over)
    return case(c.id, desc or c.desc, **kw)


def expected_exit(close):
    """The `kaze client` contract: 0 after a close handshake with 1000, 1001 or no
    code; 1 when the client failed the connection or the server's code was another."""
    if close.kind == "normal":
        return 0
    if close.kind == "fail":
        return 1
    return 0 if all(code in (1000, 1001, None) for code in close.codes) else 1


# ------------------------------------------------------------------ one run

class Session:
    """One case's run: the client process, its connection, what was found."""

    def __init__(self, c, listener, launch):
        self.case, self.listener, self.launch = c, listener, launch
        self.proc = None
        self.conn = None
        self.request = None
        self.problems = []
        self.expect_exit = None      # the exit status the case calls for
        self.expect_stderr = None    # a regular expression stderr must match (refusals)

    @property
    def url(self):
        return "ws://127.0.0.1:%d/%s" % (self.listener.port, self.case.id)

    def run(self):
        c = self.case
        if not c.connects:
            return self.run_no_connection()
        self.proc = self.launch(["--echo"] + c.args + [self.url])
        sock = self.listener.accept(ACCEPT_WAIT, alive=self.proc.alive)
        if sock is None:
            code = self.proc.wait(0.5)
            return ["the client did not connect within %.0f s (%s)%s" % (
                ACCEPT_WAIT, describe_status(code), self.stderr_note())]
        self.conn = ServerConn(sock, timeout=max(c.timeout, 10.0))
        try:
            try:
                self.request = self.conn.read_request(_deadline(REQUEST_WAIT))
            except (HandshakeError, Timeout, OSError) as e:
                self.problems.append("opening handshake request: %s" % e)
            else:
                self.problems += check_request(self)
                self.problems += (c.run or run_frames)(self)
        except Timeout as e:
            self.problems.append("timed out: %s; %s" % (e, self.conn.describe_end()))
        finally:
            self.conn.close_socket()
        self.problems += self.check_exit()
        extra = self.listener.drain()
        if extra:
            self.problems.append("the client opened %d more connection(s)" % extra)
        if self.problems and not any("stderr:" in p for p in self.problems):
            note = self.stderr_note()
            if note:
                self.problems.append(note.lstrip("; "))
        return self.problems

    def run_no_connection(self):
        """A command line that must fail before connecting, with exit status c.exit."""
        c = self.case
        self.proc = self.launch([a.replace("{url}", self.url) for a in c.args])
        self.expect_exit = c.exit
        problems = self.check_exit()
        sock = self.listener.accept(0.1)
        if sock is not None:
            sock.close()
            problems.append("the client connected, though its command line is invalid")
        c.info = "stderr %r" % self.proc.stderr_text().strip()[-300:]
        return problems

    # ---------------------------------------------------------- answering

    def respond(self, answer=None, protocol=None, response=None, chop=None):
        """Answer the request: a valid 101 (with these extension and subprotocol
        answers) or response(self)'s bytes, then frames. A permessage-deflate answer
        is in force as check_pmd_answer reads it against the client's offer."""
        data = response(self) if response else response_101(self.request.key or "", protocol, answer)
        self.conn.respond(data, chop=chop)
        pmd = None
        if answer is not None:
            pmd, probs = check_pmd_answer(self.request.all("Sec-WebSocket-Extensions"), answer)
            if probs:
                self.problems.append("the suite's answer %r does not fit the client's offer %r: %s"
                                     % (answer, self.request.all("Sec-WebSocket-Extensions"), "; ".join(probs)))
        self.conn.open(pmd)

    # ----------------------------------------------------------- the end

    def close_normally(self):
        """The server closes with 1000 (unless a close went already) and judges the end."""
        c = self.conn
        if not c.close_sent and c.tcp_end is None:
            c.send_close(1000)
        c.wait(lambda: c.close_received, CLOSE_WAIT)
        self.expect_exit = 0
        return self.judge_end(NORMAL)

    def judge_end(self, spec):
        """The client's close frame against spec, then TCP: our FIN, then the client's
        (RFC 6455 7.1.1: the server closes first; the client must not reset)."""
        conn = self.conn
        problems = []
        want = " or ".join("empty" if x is None else str(x) for x in spec.codes)
        if not conn.close_received:
            if spec.kind == "fail":
                problems.append("expected the client to fail the connection with close %s, got %s"
                                % (want, conn.describe_end()))
            else:
                problems.append("expected the client's close reply (%s), got %s" % (want, conn.describe_end()))
        else:
            if conn.close_code not in spec.codes:
                problems.append("client's close code %s, expected %s" % (
                    "empty" if conn.close_code is None else conn.close_code, want))
            if spec.kind == "normal" and conn.close_initiator == "client":
                problems.append("the client closed first (%s) while the server was to close once the "
                                "echoes were in" % conn.describe_end())
        conn.end_tcp(CLOSE_WAIT)
        if conn.tcp_end is None:
            problems.append("the client did not close TCP within %.0f s of the server's FIN" % CLOSE_WAIT)
        elif conn.tcp_end == "reset":
            problems.append("the client reset TCP (RST) instead of closing it cleanly (FIN); RFC 6455 7.1.1")
        elif REQUIRE_SERVER_CLOSES_FIRST and conn.close_received:
            state = conn.client_tcp_state()
            if conn.peer_ended_before_fin or state in ACTIVE_CLOSE_STATES:
                problems.append("the client closed TCP before the server did (its socket is in %s); after the "
                                "close handshake a client SHOULD wait for the server's FIN (RFC 6455 5.5.1, "
                                "7.1.1)" % (state or "its FIN came first"))
        return problems

    def check_exit(self):
        if self.proc is None:
            return []
        code = self.proc.wait(EXIT_WAIT)
        problems = []
        if code is None:
            self.proc.kill()
            problems.append("the client was still running %.0f s after the connection ended (killed)" % EXIT_WAIT)
        elif self.expect_exit is not None and code != self.expect_exit:
            problems.append("%s, expected exit status %d%s" % (describe_status(code), self.expect_exit,
                                                               self.stderr_note()))
        if self.expect_stderr is not None:
            err = self.proc.stderr_text()
            self.case.info += "; %s; stderr %r" % (describe_status(code), err.strip()[-300:])
            if not re.search(self.expect_stderr, err, re.I):
                problems.append("stderr does not say what went wrong (expected a match for /%s/): %r"
                                % (self.expect_stderr, err[-400:]))
        return problems

    def stderr_note(self):
        err = self.proc.stderr_text().strip() if self.proc else ""
        return "; client stderr: %r" % err[-400:] if err else ""


def _deadline(seconds):
    return time.monotonic() + seconds


def describe_status(code):
    if code is None:
        return "still running"
    if code < 0:
        try:
            return "killed by %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exit status %d" % code


def run_case(c, listener, launch):
    """Run one case; returns a list of problems (empty: passed). launch(args) starts
    `kaze client` with these arguments and returns a handle (client_run.Client)."""
    return Session(c, listener, launch).run()


# ------------------------------------------------------------------ the request

def _header_args(args):
    """The (name, value) pairs of the --header options."""
    out = []
    for i, a in enumerate(args[:-1]):
        if a == "--header":
            name, _, value = args[i + 1].partition(":")
            out.append((name.strip(), value.strip()))
    return out


def check_request(s):
    """The opening handshake request, against RFC 6455 4.1 and the options given."""
    req, c, conn = s.request, s.case, s.conn
    p = []
    if req.method != "GET":
        p.append("request method %r, expected GET (RFC 6455 4.1 item 2)" % req.method)
    if req.target != "/" + c.id:
        p.append("request target %r, expected %r (the URL's path, RFC 6455 4.1 item 3)" % (req.target, "/" + c.id))
    if not re.fullmatch(r"HTTP/1\.[1-9]", req.version):
        p.append("request version %r, expected HTTP/1.1 (RFC 6455 4.1 item 2)" % req.version)
    host = "127.0.0.1:%d" % s.listener.port
    if [h.lower() for h in req.all("Host")] != [host]:
        p.append("Host header(s) %r, expected exactly one %r (RFC 6455 4.1 item 4: the port too, as it is not "
                 "80)" % (req.all("Host"), host))
    if "websocket" not in req.tokens("Upgrade"):
        p.append("Upgrade header %r lacks websocket (RFC 6455 4.1 item 5)" % req.get("Upgrade"))
    if "upgrade" not in req.tokens("Connection"):
        p.append("Connection header %r lacks Upgrade (RFC 6455 4.1 item 6)" % req.get("Connection"))
    kp = key_problem(req.key)
    if kp:
        p.append(kp + " (RFC 6455 4.1 item 7)")
    elif req.key in _SEEN_KEYS:
        p.append("Sec-WebSocket-Key %r was sent before; it must be a fresh random nonce per connection "
                 "(RFC 6455 4.1 item 7)" % req.key)
    else:
        _SEEN_KEYS.add(req.key)
    if req.all("Sec-WebSocket-Version") != ["13"]:
        p.append("Sec-WebSocket-Version %r, expected exactly one '13' (RFC 6455 4.1 item 9)"
                 % req.all("Sec-WebSocket-Version"))
    want_protocols = PROTOCOLS if "--subprotocol" in c.args else []
    got = [t.strip() for t in (req.get("Sec-WebSocket-Protocol") or "").split(",") if t.strip()]
    if got != want_protocols:
        p.append("Sec-WebSocket-Protocol offers %r, expected %r (RFC 6455 4.1 item 10)" % (got, want_protocols))
    exts = req.all("Sec-WebSocket-Extensions")
    if "--compress" in c.args:
        try:
            parsed = [e for v in exts for e in parse_extensions(v)]
        except ValueError as e:
            parsed = "unparseable: %s" % e
        if parsed != [(PMD, [("client_max_window_bits", None)])]:
            p.append("Sec-WebSocket-Extensions %r, expected exactly %r (what --compress offers)" % (exts, OFFER))
    elif exts:
        p.append("Sec-WebSocket-Extensions %r offered without --compress" % exts)
    for name, value in _header_args(c.args):
        if value not in req.all(name):
            p.append("--header '%s: %s' is not in the request (%s: %r)" % (name, value, name, req.all(name)))
    if conn.early_bytes:
        p.append("the client sent %s right behind its request, before the server's answer (RFC 6455 4.1: it "
                 "MUST wait for the response)" % short(conn.early_bytes))
    return p


# ------------------------------------------------------------------ frame cases

def run_frames(s):
    """A frame case: the 101, the actions, the expected events and end."""
    c, conn = s.case, s.conn
    s.respond(answer=c.answer, protocol=c.protocol, response=c.response, chop=c.chop)
    ctx = cases.Ctx(conn)
    actions = c.actions() if callable(c.actions) else c.actions
    expect = c.expect() if callable(c.expect) else c.expect
    for act in actions:
        if conn.close_received or conn.tcp_end or conn.send_error:
            break  # the client failed the connection: stop, like Autobahn's cases do
        act(ctx)
    if c.close.kind == "normal":
        want = max(len(expect), *(len(a) for a in c.expect_any)) if c.expect_any else len(expect)
        conn.wait(lambda: len(data_events(conn)) >= want or conn.close_received, c.timeout)
        if not conn.close_sent and conn.tcp_end is None:
            conn.send_close(1000)
        conn.wait(lambda: conn.close_received, CLOSE_WAIT)
    else:
        # Stop early when the client echoed what it should not have: a client that
        # echoes an invalid message will not fail the connection later.
        def done():
            evs = data_events(conn)
            return conn.close_received or (c.expect_any is None and c.match is None and (
                len(evs) > len(expect) or evs != expect[:len(evs)]))
        conn.wait(done, FAIL_WAIT if c.close.kind == "fail" else CLOSE_WAIT)
    problems = list(ctx.problems)
    if c.after is not None:
        problems += c.after(s)
    end = s.judge_end(c.close)
    s.expect_exit = expected_exit(c.close) if c.exit is None else c.exit
    c.info = "%s; %s; %d bytes sent" % (describe_events(data_events(conn)), conn.describe_end(), conn.sent_bytes)
    problems += frame_problems(conn)
    evs = data_events(conn)
    if c.match is not None:
        m = c.match(evs)
        if m:
            problems.append(m)
    elif c.expect_any is not None:
        if evs not in c.expect_any:
            problems.append("got %s, expected one of %s"
                            % (describe_events(evs), " or ".join(describe_events(a) for a in c.expect_any)))
    elif evs != expect:
        problems.append(diff_events(expect, evs))
    return problems + end


def frame_problems(conn):
    p = ["protocol violation: " + v for v in conn.violations]
    mk = conn.mask_key_problem()
    if mk:
        p.append("protocol violation: " + mk)
    return p


# ================================================================ groups 1-7, 9, 10
# cases.py's cases as they are; only their frames are unmasked now.

_OVERRIDES = {
    # Autobahn takes 1002 or 1007 here; RFC 6455 7.4.1 makes 1007 the code for data
    # that is not consistent with its type (a close reason is UTF-8, 5.5.1), and
    # Kaze's server answers 1007, so the client must too.
    "7.5.1": dict(close=REPLY(1007), desc="close with a reason that is not valid UTF-8: 1007"),
}
for _c in cases.CASES:
    _g = _c.id.split(".")[0]
    if _g in ("1", "2", "3", "4", "5", "6", "7", "9", "10") and _c.run is None:
        from_server_case(_c, **_OVERRIDES.get(_c.id, {}))


def ROUND_TRIPS(opcode, payload, count):
    """Send a message, wait for its echo; `count` times."""
    def act(ctx):
        c = ctx.conn
        frame = build_frame(opcode, payload)
        for i in range(count):
            c.send_raw(frame)
            if not c.wait(lambda: len(data_events(c)) > i, EVENT_WAIT):
                ctx.problems.append("no echo for message %d of %d within %.0f s (%s)"
                                    % (i + 1, count, EVENT_WAIT, c.describe_end()))
                return
    return act


for _i, _n in enumerate([0, 16, 64, 256, 1024, 4096], 1):
    for _g, _kind, _op, _gen in (("9.7", "text", TEXT, lambda n: b"*" * n),
                                 ("9.8", "binary", BINARY, lambda n: (bytes(range(256)) * (n // 256 + 1))[:n])):
        _p = _gen(_n)
        case("%s.%d" % (_g, _i), "1000 %s messages of %d bytes, one round trip each" % (_kind, _n),
             [ROUND_TRIPS(_op, _p, 1000)], [msg(_kind, _p)] * 1000, timeout=60.0)


# ================================================================ hs: opening handshake

_HELLO_ACTS = [F(TEXT, "Hello, client!"), F(PING, "are you there?")]
_HELLO_EXPECT = [msg("text", "Hello, client!"), pong("are you there?")]


def _ok(cid, desc, response=None, chop=None, **kw):
    """A valid answer the client must take: then a text message and a ping, echoed and
    answered (in either order: when to send a pong is the client's business)."""
    case(cid, desc, _HELLO_ACTS, _HELLO_EXPECT, response=response, chop=chop,
         match=cases._in_order_apart(_HELLO_EXPECT), **kw)


def _head(status, headers):
    """A response builder: the status line and headers; headers may be a function of the session."""
    return lambda s: http_head(status, headers(s) if callable(headers) else headers)


def _std(s, drop=(), extra=(), accept=None, upgrade="websocket", connection="Upgrade"):
    """The headers of a valid 101, with some left out (drop) or changed."""
    h = [("Upgrade", upgrade), ("Connection", connection),
         ("Sec-WebSocket-Accept", accept_value(s.request.key or "") if accept is None else accept)]
    return [(k, v) for k, v in h if k not in drop] + list(extra)


_SWITCH = "HTTP/1.1 101 Switching Protocols"

_ok("hs.1", "valid 101: the text message is echoed and the ping answered")
# RFC 6455 4.1 (the client's checks of the response) items 2 and 3: "websocket" and
# "Upgrade" are ASCII case-insensitive, and Connection is a token list (RFC 7230 6.1).
_ok("hs.2", "'Upgrade: WebSocket', 'Connection: keep-alive, Upgrade': accepted",
    _head(_SWITCH, lambda s: _std(s, upgrade="WebSocket", connection="keep-alive, Upgrade")))
# RFC 7230 3.2: header names are case-insensitive; whitespace around values is not part of them.
_ok("hs.3", "header names in lower case, whitespace around the values: accepted",
    lambda s: ("HTTP/1.1 101 Switching Protocols\r\nupgrade:websocket\r\nconnection:   upgrade  \r\n"
               "sec-websocket-accept: \t%s \r\n\r\n" % accept_value(s.request.key or "")).encode())
_ok("hs.4", "another reason phrase and 20 more header lines (Server, Date, Set-Cookie, ...): accepted",
    _head("HTTP/1.1 101 Web Socket Protocol Handshake",
          lambda s: _std(s, extra=[("Server", "Kaze-conformance/1"), ("Date", "Thu, 01 Jan 2025 00:00:00 GMT"),
                                   ("Set-Cookie", "session=abc; Path=/; HttpOnly")]
                         + [("X-Extra-%d" % i, "value %d" % i) for i in range(17)])))
# The frames may come in the same TCP segment as the 101 (RFC 6455 4.1: data after the
# head is WebSocket data).
case("hs.5", "the 101 and, in the same write, a text message and a ping: both handled",
     response=lambda s: response_101(s.request.key or "") + build_frame(TEXT, "right behind the 101")
     + build_frame(PING, "me too"),
     match=cases._in_order_apart([msg("text", "right behind the 101"), pong("me too")]),
     expect=[msg("text", "right behind the 101"), pong("me too")])
_ok("hs.6", "the 101 sent in 1-byte pieces: accepted", chop=1)
_ok("hs.7", "a 101 head of about 4000 bytes (one long header line): accepted",
    _head(_SWITCH, lambda s: _std(s, extra=[("X-Filler", "f" * 3900)])))
_ok("hs.8", "--header 'X-Kaze-Test: conformance' --header 'Authorization: Bearer a.b.c': both in the request",
    args=["--header", "X-Kaze-Test: conformance", "--header", "Authorization: Bearer a.b.c"])


def refuse(response, stderr, shutdown=False, chop=None):
    """An answer the client must refuse (RFC 6455 4.1: "the client MUST _Fail the
    WebSocket Connection_"): it must close TCP without sending anything (no frame,
    nothing), exit 1 and say on stderr what was wrong (stderr must match the regular
    expression, case-insensitively). shutdown: the server closes TCP after the answer."""
    def run(s):
        conn = s.conn
        s.expect_exit = 1
        s.expect_stderr = stderr
        conn.respond(response(s), chop=chop)
        if shutdown:
            conn.shutdown()
        conn.wait_tcp_end(REFUSE_WAIT)
        problems = []
        if conn.tcp_end is None:
            problems.append("the client kept the connection open %.0f s after the answer it must refuse"
                            % REFUSE_WAIT)
        if conn.rx:
            problems.append("the client sent %s after the answer it must refuse; a failed handshake sends "
                            "nothing (RFC 6455 4.1, 7.1.7)" % short(conn.rx, 60))
        s.case.info = "TCP %s; client sent %d bytes" % (conn.tcp_end, len(conn.rx))
        return problems
    return run


def _refuse(cid, desc, response, stderr, profile="default", **kw):
    case(cid, desc, profile=profile, run=refuse(response, stderr, **kw))


_STATUS = r"101|status"
_ACCEPT = r"accept"
_CLOSED = r"clos|eof|end|incomplete|reset|connection|truncat|malformed"
_HS = 20  # refusals from hs.20 on, so that positive cases can be added below

for _k, (_desc, _resp, _err, _kw) in enumerate([
    ("200 OK with a body (Content-Length), TCP kept open",
     lambda s: http_head("HTTP/1.1 200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")]) + b"hello\n",
     _STATUS, {}),
    ("403 Forbidden with a body and 'Connection: close', then the server closes",
     lambda s: http_head("HTTP/1.1 403 Forbidden", [("Content-Type", "text/plain"), ("Content-Length", "10"),
                                                    ("Connection", "close")]) + b"forbidden\n",
     _STATUS + "|403", {"shutdown": True}),
    # RFC 6455 4.1: a client need not follow a redirect; `kaze client` does not.
    ("301 Moved Permanently to another URL",
     _head("HTTP/1.1 301 Moved Permanently", [("Location", "ws://127.0.0.1:1/moved"), ("Content-Length", "0")]),
     _STATUS + "|301|redirect", {}),
    ("426 Upgrade Required with Sec-WebSocket-Version: 13",
     _head("HTTP/1.1 426 Upgrade Required", [("Sec-WebSocket-Version", "13"), ("Content-Length", "0")]),
     _STATUS + "|426", {}),
    # RFC 6455 4.1, the client's checks of the response, items 2-4.
    ("101 without Sec-WebSocket-Accept", _head(_SWITCH, lambda s: _std(s, drop=("Sec-WebSocket-Accept",))),
     _ACCEPT, {}),
    ("101 with the Sec-WebSocket-Accept of another key",
     _head(_SWITCH, lambda s: _std(s, accept=accept_value(new_key()))), _ACCEPT, {}),
    ("101 with base64(SHA-1(key)), the GUID left out",
     _head(_SWITCH, lambda s: _std(s, accept=base64.b64encode(hashlib.sha1((s.request.key or "").encode())
                                                                .digest()).decode())), _ACCEPT, {}),
    ("101 with the right Sec-WebSocket-Accept in swapped case (base64 is case-sensitive)",
     _head(_SWITCH, lambda s: _std(s, accept=accept_value(s.request.key or "").swapcase())), _ACCEPT, {}),
    ("101 with two Sec-WebSocket-Accept lines, the right one and a wrong one",
     _head(_SWITCH, lambda s: _std(s, extra=[("Sec-WebSocket-Accept", accept_value(new_key()))])), _ACCEPT, {}),
    ("101 without Upgrade", _head(_SWITCH, lambda s: _std(s, drop=("Upgrade",))), r"upgrade", {}),
    ("101 with 'Upgrade: h2c'", _head(_SWITCH, lambda s: _std(s, upgrade="h2c")), r"upgrade", {}),
    ("101 without Connection", _head(_SWITCH, lambda s: _std(s, drop=("Connection",))), r"connection", {}),
    ("101 with 'Connection: keep-alive'", _head(_SWITCH, lambda s: _std(s, connection="keep-alive")),
     r"connection", {}),
    # A client must bound what it buffers; the library's default limit is 8 KiB.
    ("a 101 head of 1 MiB (one header line): over the client's limit",
     _head(_SWITCH, lambda s: _std(s, extra=[("X-Filler", "f" * MIB)])), r"large|long|big|limit|size", {}),
    ("not HTTP: 'SSH-2.0-OpenSSH_9.6' and an empty line, TCP kept open",
     lambda s: b"SSH-2.0-OpenSSH_9.6\r\n\r\n", r"malformed|http|status|101|response", {}),
    ("200 bytes of binary junk, then the server closes",
     lambda s: bytes((i * 37 + 11) & 0xFF for i in range(200)), r"malformed|http|status|101|response|clos",
     {"shutdown": True}),
    ("a 101 whose header line has no colon ('Upgrade websocket')",
     lambda s: ("HTTP/1.1 101 Switching Protocols\r\nUpgrade websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Accept: %s\r\n\r\n" % accept_value(s.request.key or "")).encode(),
     r"malformed|header|upgrade|http|response", {}),
    ("no answer: the server closes TCP right after the request", lambda s: b"", _CLOSED, {"shutdown": True}),
    ("half a 101 head, then the server closes TCP",
     lambda s: response_101(s.request.key or "")[:60], _CLOSED, {"shutdown": True}),
], _HS):
    _refuse("hs.%d" % _k, "refused: " + _desc, _resp, _err, **_kw)


# ================================================================ sub: subprotocols
# RFC 6455 4.1, the client's checks, item 6: a subprotocol the client did not offer
# fails the connection; none chosen is fine. 4.2.2: the server selects one value.

_ok("sub.1", "offer chat, superchat; the server chooses superchat: works", profile="subproto",
    protocol="superchat")
_ok("sub.2", "offer chat, superchat; the server chooses chat: works", profile="subproto", protocol="chat")
_ok("sub.3", "offer chat, superchat; the server chooses none: works", profile="subproto")
_SUB = r"subprotocol"
for _k, (_desc, _proto, _profile) in enumerate([
        ("no offer; the server chooses chat", "chat", "default"),
        ("offer chat, superchat; the server chooses foo", "foo", "subproto"),
        ("offer chat, superchat; the server answers 'chat, superchat' (two values)", "chat, superchat", "subproto"),
        ("offer chat, superchat; the server chooses 'chat2'", "chat2", "subproto")], 4):
    _refuse("sub.%d" % _k, "refused: " + _desc,
            functools.partial(lambda p, s: response_101(s.request.key or "", protocol=p), _proto), _SUB,
            profile=_profile)


# ================================================================ pipe, lim: as in cases.py

for _c in cases.CASES:
    if _c.id.split(".")[0] in ("pipe", "lim") or _c.id == "x.3":
        from_server_case(_c)


# ================================================================ x: client-role framing

# RFC 6455 5.1: "A client MUST close a connection if it detects a masked frame" (and MAY
# use 1002, which strict means it does).
case("x.1", "masked text frame from the server: 1002", [F(TEXT, "masked", mask=True)], [], FAIL(1002))
case("x.2", "text, then a masked ping: echo, then 1002",
     [F(TEXT, "unmasked"), F(PING, "masked", mask=True)], [msg("text", "unmasked")], FAIL(1002))
case("x.4", "masked with an all-zero key (the mask bit is what counts): 1002",
     [F(TEXT, "zero key", mask=True, mask_key=b"\0\0\0\0")], [], FAIL(1002))
case("x.5", "masked close frame from the server: 1002",
     [F(CLOSE, close_payload(1000), mask=True)], [], FAIL(1002))
case("x.6", "masked continuation of an unmasked text: 1002",
     [F(TEXT, "frag1", fin=False), F(CONT, "frag2", mask=True)], [], FAIL(1002))


def _fresh_keys(s):
    """RFC 6455 5.3: a fresh masking key for each frame, unpredictable."""
    conn = s.conn
    n = conn.masked_frames
    if n >= 50 and len(conn.mask_keys) < n:
        return ["%d frames but only %d different mask keys (RFC 6455 5.3: a fresh key per frame)"
                % (n, len(conn.mask_keys))]
    return []


case("x.7", "50 messages echoed: 50 different mask keys (RFC 6455 5.3)",
     [F(BINARY, b"key %d" % i) for i in range(50)], [msg("binary", b"key %d" % i) for i in range(50)],
     after=_fresh_keys)


def _late_fin(s):
    """The server holds its FIN back for a second after the close handshake: the
    client waits for it (RFC 6455 5.5.1, 7.1.1), it does not close first."""
    conn = s.conn
    conn.pump(1.0)
    if conn.tcp_end is not None:
        return ["the client closed TCP (%s) within 1 s of the close handshake instead of waiting for the "
                "server's FIN (RFC 6455 5.5.1: the client SHOULD wait)" % conn.tcp_end]
    return []


case("x.8", "the server sends its FIN 1 s after the close handshake: the client waits for it, then exits 0",
     [F(TEXT, "then close")], [msg("text", "then close")], after=_late_fin)
case("x.9", "the server closes with 1000 and a reason at once (no data): close reply, exit 0",
     [cases.CLOSE_FRAME(1000, "bye")], [], REPLY(1000))


# ================================================================ permessage-deflate

def PMD_IN_FORCE(ctx):
    if ctx.conn.pmd is None:
        ctx.problems.append("permessage-deflate is not in force, so nothing here is compressed")


def pmd_echo(answer, messages, frag=None, pipeline=False):
    """Answer the offer with `answer`, send each message compressed (in frames of
    `frag` wire bytes), wait for its echo (or with pipeline send all in one write),
    compare, close normally."""
    def run(s):
        s.respond(answer=answer)
        conn = s.conn
        problems = []
        if conn.pmd is None:
            problems.append("permessage-deflate is not in force after the answer %r" % answer)
        msgs = messages() if callable(messages) else messages
        if pipeline:
            conn.send_raw(b"".join(conn.message_frames(TEXT if k == "text" else BINARY, p, frag=frag)
                                   for k, p in msgs))
            if not conn.wait(lambda: len(_messages(conn)) >= len(msgs), EVENT_WAIT):
                problems.append("waited %.0f s for %d echoes, got %d (%s)"
                                % (EVENT_WAIT, len(msgs), len(_messages(conn)), conn.describe_end()))
        else:
            for i, (kind, payload) in enumerate(msgs):
                conn.send_message(TEXT if kind == "text" else BINARY, payload, frag=frag)
                if not conn.wait(lambda: len(_messages(conn)) > i, EVENT_WAIT):
                    problems.append("no echo of message %d of %d (%s, %d bytes) within %.0f s: %s"
                                    % (i + 1, len(msgs), kind, len(payload), EVENT_WAIT, conn.describe_end()))
                    break
                if _messages(conn)[i] != ("message", kind, payload):
                    break
        d = _compare(msgs, _messages(conn), conn.compressed)
        if d and not problems:
            problems.append(d)
        problems += s.close_normally()
        problems += frame_problems(conn)
        z = sum(conn.compressed)
        s.case.info = "%s; %d of %d echoes compressed; %s" % (conn.pmd, z, len(conn.compressed), conn.describe_end())
        return problems
    return run


def _check_answers():
    """Every answer below that the client must take is valid for its offer, and
    every one it must refuse is not (wsclient.check_pmd_answer, RFC 7692 7.1)."""
    for a in _GOOD_ANSWERS:
        params, probs = check_pmd_answer([OFFER], a)
        assert params is not None and not probs, (a, probs)
    for a, offered in _BAD_ANSWERS:
        params, probs = check_pmd_answer([OFFER] if offered else [], a)
        assert probs, a


_GOOD_ANSWERS = []
_BAD_ANSWERS = []


def _good(answer):
    _GOOD_ANSWERS.append(answer)
    return answer


# Autobahn sends 1000 messages of each size; the server-role suite scales that to 2 MiB
# of payload per case. Here it is half that (at most 500 messages, 1 MiB), as each
# message makes a round trip through Python twice (compressed by the suite, inflated
# from the echo), so that groups 12 and 13 take about half a minute.
MAX_COUNT_12_13, BYTES_12_13 = 500, MIB


def _count(size):
    return max(MIN_COUNT, min(MAX_COUNT_12_13, BYTES_12_13 // size))


# ---------------------------------------------------------------- group 12
# Autobahn's accept_deflate: the offer accepted as it is, no parameters.

ANSWER_12 = _good(PMD)
for _j, (_dname, _gen, _kind, _comp) in enumerate(DATA_SETS, 1):
    for _i, (_size, _frag) in enumerate(MSG_SIZES, 1):
        _n = _count(_size)
        case("12.%d.%d" % (_j, _i),
             "%s: %d %s messages of %d bytes%s, compressed by the server, echoed one by one; answer %r"
             % (_dname, _n, _kind, _size, " in frames of %d wire bytes" % _frag if _frag else "", ANSWER_12),
             profile="compress", timeout=30.0,
             run=pmd_echo(ANSWER_12, functools.partial(lambda g, k, s, n: autobahn_messages(g(), k, s, n),
                                                       _gen, _kind, _size, _n), frag=_frag or None))

# ---------------------------------------------------------------- group 13
# Autobahn's server accepts 1-6 (requestNoContextTakeover, requestMaxWindowBits):
# (False, 0), (True, 0), (False, 8), (False, 15), (True, 8), (True, 15). Its 7th falls
# back through (True, 8), (True, 0), (False, 0) and so, for this client's single offer,
# answers as 13.5; here 13.7 answers all four parameters instead (windows of 9), so
# that the server's own parameters are covered too.

ANSWERS_13 = [_good(a) for a in [
    PMD,
    PMD + "; client_no_context_takeover",
    PMD + "; client_max_window_bits=8",
    PMD + "; client_max_window_bits=15",
    PMD + "; client_no_context_takeover; client_max_window_bits=8",
    PMD + "; client_no_context_takeover; client_max_window_bits=15",
    PMD + "; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; "
          "client_max_window_bits=9",
]]
for _j, _answer in enumerate(ANSWERS_13, 1):
    for _i, (_size, _frag) in enumerate(MSG_SIZES, 1):
        _n = _count(_size)
        case("13.%d.%d" % (_j, _i),
             "JSON: %d text messages of %d bytes%s; answer %r"
             % (_n, _size, " in frames of %d wire bytes" % _frag if _frag else "", _answer),
             profile="compress", timeout=30.0,
             run=pmd_echo(_answer, functools.partial(lambda s, n: autobahn_messages(_json(), "text", s, n, start=s),
                                                     _size, _n), frag=_frag or None))

# ---------------------------------------------------------------- pmd: parameters and forms
# RFC 7692 7.1: the server may answer client_max_window_bits (offered without a value,
# so any of 8..15) and may add server_no_context_takeover and server_max_window_bits
# though not offered (7.1.1.1, 7.1.2.1), and client_no_context_takeover (7.1.1.2). The
# client compresses within the window it was given (checked by inflating with exactly
# that window) and inflates with the server's.

_PN = 1


def _pmd(desc, answer, messages=_probe_msgs, **kw):
    global _PN
    case("pmd.%d" % _PN, "%s; answer %r" % (desc, answer), profile="compress", timeout=30.0,
         run=pmd_echo(_good(answer), messages, **kw))
    _PN += 1


for _b in range(8, 16):
    _pmd("client_max_window_bits=%d: the client's echoes fit a %d-bit window" % (_b, _b),
         PMD + "; client_max_window_bits=%d" % _b)
for _b in range(8, 16):
    _pmd("server_max_window_bits=%d (not offered, RFC 7692 7.1.2.1): the server compresses with it" % _b,
         PMD + "; server_max_window_bits=%d" % _b)
_SAME5 = lambda: [("text", _utf8_fix(_json()[:5000]))] * 5  # noqa: E731
_pmd("server_no_context_takeover (not offered, RFC 7692 7.1.1.1): the same message 5 times",
     PMD + "; server_no_context_takeover", _SAME5)
_pmd("client_no_context_takeover: the client resets its compressor per message; the same message 5 times",
     PMD + "; client_no_context_takeover", _SAME5)
_pmd("all four parameters, windows of 10", PMD + "; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=10; client_max_window_bits=10")
_pmd("quoted values (RFC 6455 9.1)", PMD + '; client_max_window_bits="10"; server_max_window_bits="12"')
_pmd("no whitespace around ';' and '='", PMD + ";client_no_context_takeover;server_max_window_bits=12")
_pmd("100 compressed text and binary messages of mixed sizes pipelined in one write", PMD,
     lambda: [(k, m) for i in range(20) for k, m in [
         ("text", _utf8_fix(_json()[i * 997:i * 997 + (i * 131) % 3000])),
         ("binary", _bitmap()[i * 4001:i * 4001 + 64 + i * 50]),
         ("text", b"short %d" % i), ("binary", _random()[i * 500:i * 500 + 200]), ("text", b"")]],
     pipeline=True)
_pmd("a 4 MiB JSON message in 64 KiB frames, twice (context takeover)", PMD,
     lambda: [("text", (_json() * 16)[:4 * MIB])] * 2, frag=64 * KIB)
_pmd("16 MiB (the default limit) of compressible text, compressed: echoed", PMD,
     lambda: [("text", (_prose() * 64)[:16 * MIB])])
_pmd("16 MiB of random bytes, compressed (so larger on the wire) in 1 MiB frames: echoed", PMD,
     lambda: [("binary", random.Random(18).randbytes(16 * MIB))], frag=MIB)


def MIXED(ctx):
    """Compressed, uncompressed, compressed...: RSV1 is per message (RFC 7692 6)."""
    m = _utf8_fix(_json()[:3000])
    for z in (True, False, True, False, True):
        ctx.conn.send_message(TEXT, m, compress=z)


case("pmd.%d" % _PN, "compressed and uncompressed messages from the server, alternating: all echoed",
     [PMD_IN_FORCE, MIXED], [msg("text", _utf8_fix(_json()[:3000]))] * 5, profile="compress", answer=_good(PMD))
_PN += 1
# Hand-made compressed messages (cases_deflate.py's): the empty forms of RFC 7692 7.2.3.6,
# a BFINAL-ended message (7.2.3.4), the examples of 7.2.3.1-7.2.3.3.
for _desc, _frames, _exp in _PN_EMPTY:
    case("pmd.%d" % _PN, _desc, [PMD_IN_FORCE, CRAFT(_frames)], _exp, profile="compress", answer=PMD)
    _PN += 1
case("pmd.%d" % _PN, "compressed message in 1-byte frames with pings between them",
     [PMD_IN_FORCE, CRAFT(_PING_FRAGS)], _PING_EXPECT, match=_msgs_then_pongs(_PING_EXPECT),
     profile="compress", answer=PMD)
_PN += 1
case("pmd.%d" % _PN, "compressed multi-byte text in 1-byte frames (UTF-8 checked across inflated pieces)",
     [PMD_IN_FORCE, CRAFT(lambda c: b"".join(build_frame(TEXT if i == 0 else CONT, _KZ[i:i + 1],
                                                         fin=i == len(_KZ) - 1, rsv=4 if i == 0 else 0)
                                             for i in range(len(_KZ))))],
     [msg("text", "κόσμε €𝄞 ".encode() * 60)], profile="compress", answer=PMD)
_PN += 1


# ---------------------------------------------------------------- pmdneg: refused or not agreed
# RFC 6455 4.1, item 5 of the client's checks of the response (an extension not offered),
# and RFC 7692 7.1 (a client MUST fail the connection on an answer with an unknown
# parameter, a parameter twice, an invalid value, or client_max_window_bits it did not
# offer). --compress always offers client_max_window_bits, so that last one is the
# answer with it to a client that offered nothing (pmdneg.2).

_EXT = r"extension"
_NN = 1
for _desc, _answer, _offered in [
        ("permessage-deflate though --compress was not given", PMD, False),
        ("permessage-deflate; client_max_window_bits=10 though nothing was offered", PMD
         + "; client_max_window_bits=10", False),
        ("x-foo though nothing was offered", "x-foo", False),
        ("x-foo (not offered)", "x-foo", True),
        ("permessage-deflate, x-foo (x-foo not offered)", PMD + ", x-foo", True),
        ("permessage-deflate twice", PMD + ", " + PMD, True),
        ("unknown parameter foo", PMD + "; foo", True),
        ("unknown parameter with a value", PMD + "; foo=bar", True),
        ("client_max_window_bits without a value (RFC 7692 7.1.2.2: an answer gives one)",
         PMD + "; client_max_window_bits", True),
        ("client_max_window_bits=16", PMD + "; client_max_window_bits=16", True),
        ("client_max_window_bits=7", PMD + "; client_max_window_bits=7", True),
        ("server_max_window_bits=16", PMD + "; server_max_window_bits=16", True),
        ("server_max_window_bits=7", PMD + "; server_max_window_bits=7", True),
        ("server_max_window_bits without a value", PMD + "; server_max_window_bits", True),
        ("server_max_window_bits=010 (a leading zero)", PMD + "; server_max_window_bits=010", True),
        ("server_no_context_takeover=1 (takes no value)", PMD + "; server_no_context_takeover=1", True),
        ("client_no_context_takeover twice", PMD + "; client_no_context_takeover; client_no_context_takeover",
         True),
        ("server_max_window_bits twice", PMD + "; server_max_window_bits=10; server_max_window_bits=10", True),
        ("a trailing ';' (RFC 6455 9.1 grammar)", PMD + ";", True)]:
    _BAD_ANSWERS.append((_answer, _offered))
    _refuse("pmdneg.%d" % _NN, "refused: %s: %r" % (_desc, _answer),
            functools.partial(lambda a, s: response_101(s.request.key or "", extensions=a), _answer), _EXT,
            profile="compress" if _offered else "default")
    _NN += 1
_check_answers()

_RSV1_MSG = build_frame(TEXT, deflate_raw(b"compressed anyway " * 5), rsv=4)
# RFC 6455 5.2: RSV1 means nothing unless an extension was agreed.
case("pmdneg.%d" % _NN, "--compress, the server declines (no extension in the 101): an uncompressed echo, then "
     "RSV1 on a message fails with 1002",
     [F(TEXT, "uncompressed after a declined offer"), cases.WAIT_EVENTS(1), cases.RAW(_RSV1_MSG)],
     [msg("text", "uncompressed after a declined offer")], FAIL(1002), profile="compress")
case("pmdneg.%d" % (_NN + 1), "no --compress: a compressed message (RSV1, valid DEFLATE data) fails with 1002",
     [cases.RAW(_RSV1_MSG)], [], FAIL(1002))
_NN += 2


# ---------------------------------------------------------------- pmderr: cases_deflate.py's
# Its pmderr cases as they are, with the plain answer "permessage-deflate" (context
# takeover both ways, windows of 15); "deflate-1m" there is --max-message 1048576 here,
# and the bombs' memory check looks at the client.

def _client_rss(s):
    """After a bomb: the client's resident memory, now and at its peak, under RSS_LIMIT."""
    st = _status(s.proc.pid)
    if "VmRSS" not in st:
        return ["cannot read /proc/%d/status" % s.proc.pid]
    return ["kaze client's %s is %.1f MiB after the bomb, expected under %d MiB" % (k, st[k] / MIB, RSS_LIMIT // MIB)
            for k in ("VmRSS", "VmHWM") if st.get(k, 0) >= RSS_LIMIT]


for _c in cases.CASES:
    if _c.id.startswith("pmderr.") and _c.profile in ("default", "deflate-1m"):
        from_server_case(_c, profile="compress" if _c.profile == "default" else "compress-1m", answer=PMD,
                         after=_client_rss if _c.after is not None else None,
                         desc=_c.desc.replace("kaze echo --max-message 1M", "kaze client --max-message 1048576"))


# ================================================================ cli: usage errors
# The `kaze client` contract: exit status 2 for a usage error, before any connection.

for _k, (_desc, _args) in enumerate([
        ("no URL", ["--echo"]),
        ("an unknown option", ["--echo", "--no-such-option", "{url}"]),
        ("--max-message with a value that is not a size", ["--echo", "--max-message", "lots", "{url}"])], 1):
    case("cli.%d" % _k, "usage error, exit status 2 without connecting: %s" % _desc, args=_args, exit=2,
         connects=False)


CASES.sort(key=CCase.key)
