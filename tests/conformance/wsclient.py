"""A small raw-socket WebSocket client for Kaze's conformance suite.

Python 3 standard library only. It is deliberately low-level: it builds frames
with any opcode, RSV bits, FIN, mask and length encoding; it sends bytes in
arbitrary pieces with optional delays; it parses what the server sends and
checks every server frame against RFC 6455 (never masked, no RSV bits, control
frames unfragmented and at most 125 bytes, minimal length encoding, valid
UTF-8 in text messages and close reasons); and it records how the connection
ended: the close frame's code and reason, and whether TCP then ended with an
orderly FIN, with a reset, or not at all.

permessage-deflate (RFC 7692): handshake(extensions=...) offers any parameters,
judges the server's answer against RFC 7692 7.1 (check_pmd_answer) and keeps
the agreed parameters in .pmd. Messages built with message_frames() are then
compressed with zlib (raw DEFLATE, Z_SYNC_FLUSH, the trailing 00 00 ff ff left
off; a fresh compressor per message when client_no_context_takeover is agreed),
and incoming messages whose first frame has RSV1 are inflated (00 00 ff ff put
back; a fresh inflater per message under server_no_context_takeover; below a
15-bit window the inflater is fed in small steps so a back-reference past the
agreed window fails). RSV1 is accepted only on the first frame of a data
message, never on continuation or control frames (RFC 7692 6.1).

The socket is non-blocking; every wait takes a deadline, so nothing here can
block forever.

wss:// (run.py --tls): with Conn.tls_context set to an ssl.SSLContext, connect()
does a TLS handshake (server name Conn.tls_server_name, verified) and everything
after it goes through TLS. The ssl module's SSLObject runs over memory BIOs and this
class moves the bytes between them and the TCP socket itself, so that TCP is read
and written exactly as for ws://: each send() of ours carries the TLS record(s) of
one piece ("chop" and "delay" keep their meaning), and how TCP ended (FIN or reset)
is what recv() on the TCP socket said. (Python's SSLSocket cannot tell them apart:
with OpenSSL 3 it reports a reset as an EOF, and by default a FIN without
close_notify as a clean end.) The server's close_notify is recorded in
.tls_close_notify; it is not an end of TCP. We never send a close_notify ourselves
(it could reach a server that has already closed and turn its FIN into a reset),
which leaves the TCP behaviour exactly that of ws://.

The same machinery serves the client-role suite (client_run.py) with the roles
turned round: wsserver.ServerConn is a Conn whose peer is a client (PEER,
PEER_MASKS, ME below), and that suite sets MASK_FRAMES to False before it
imports the cases, so that every frame built without an explicit mask= is
unmasked, as a server's frames must be.
"""

import base64
import hashlib
import os
import select
import socket
import ssl
import struct
import time
import zlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
OPCODE_NAMES = {CONT: "cont", TEXT: "text", BINARY: "binary", CLOSE: "close", PING: "ping", PONG: "pong"}

# What build_frame does when not told: mask (a client's frames, RFC 6455 5.3). The
# client-role suite sets this to False before importing the cases (a server's frames).
MASK_FRAMES = True


class HandshakeError(Exception):
    """The server did not answer the opening handshake with a valid 101."""


class Timeout(Exception):
    """A deadline passed while waiting."""


def accept_value(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2, item 5.4)."""
    if isinstance(key, str):
        key = key.encode("ascii")
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode("ascii")


def new_key():
    return base64.b64encode(os.urandom(16)).decode("ascii")


def mask_bytes(key, data):
    """XOR data with the 4-byte key, repeated (RFC 6455 section 5.3). Fast for 16 MiB."""
    n = len(data)
    if n == 0:
        return b""
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(pad, "little")).to_bytes(n, "little")


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=None, mask_key=None, length=None, len_bytes=None):
    """Encode one frame.

    opcode     any value 0..15 (reserved ones too)
    rsv        the three RSV bits as an integer 0..7 (RSV1 is 4, RSV2 is 2, RSV3 is 1)
    mask       False sends an unmasked frame (a protocol violation from a client),
               True a masked one (a violation from a server); None: MASK_FRAMES
    mask_key   4 bytes; random when None
    length     the length to put in the header when it should differ from len(payload)
    len_bytes  force the length encoding: 0 (7-bit), 2 (16-bit) or 8 (64-bit);
               minimal when None
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if mask is None:
        mask = MASK_FRAMES
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if len_bytes is None:
        len_bytes = 0 if n <= 125 else (2 if n <= 0xFFFF else 8)
    if len_bytes == 0:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif len_bytes == 2:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4) if mask_key is None else mask_key
    return hdr + key + mask_bytes(key, payload)


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


def valid_utf8(data):
    """Python's strict UTF-8 codec rejects overlongs, surrogates and > U+10FFFF (RFC 3629)."""
    try:
        bytes(data).decode("utf-8", "strict")
        return True
    except UnicodeDecodeError:
        return False


def valid_close_code_from_server(code):
    """Codes a peer may put in a Close frame (RFC 6455 section 7.4)."""
    if code in (1004, 1005, 1006, 1015):
        return False
    return 1000 <= code <= 1014 or 3000 <= code <= 4999


# ------------------------------------------------------------ permessage-deflate

PMD = "permessage-deflate"
PMD_TAIL = b"\x00\x00\xff\xff"   # the end of an empty stored block (RFC 7692 7.2.1)

_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class ExtensionSyntaxError(ValueError):
    """A Sec-WebSocket-Extensions value that breaks the RFC 6455 9.1 grammar."""


def parse_extensions(value):
    """Parse a Sec-WebSocket-Extensions value (RFC 6455 9.1) into
    [(name, [(param, value or None), ...]), ...]. Quoted-string values are
    unescaped and must then be tokens (9.1). Raises ExtensionSyntaxError."""
    s, i, n = value, 0, len(value)
    out = []

    def ows():
        nonlocal i
        while i < n and s[i] in " \t":
            i += 1

    def token(what):
        nonlocal i
        j = i
        while i < n and s[i] in _TCHARS:
            i += 1
        if i == j:
            raise ExtensionSyntaxError("expected a %s at offset %d of %r" % (what, j, value))
        return s[j:i]

    def quoted():
        nonlocal i
        i += 1  # the opening quote
        buf = []
        while i < n and s[i] != '"':
            if s[i] == "\\":
                i += 1
                if i >= n:
                    break
            buf.append(s[i])
            i += 1
        if i >= n:
            raise ExtensionSyntaxError("unterminated quoted-string in %r" % value)
        i += 1
        v = "".join(buf)
        if not v or any(ch not in _TCHARS for ch in v):
            raise ExtensionSyntaxError("quoted value %r is not a token (RFC 6455 9.1)" % v)
        return v

    while True:
        ows()
        if i < n and s[i] == ",":   # empty list elements are allowed by the #rule
            i += 1
            continue
        if i >= n:
            break
        name = token("extension name")
        params = []
        ows()
        while i < n and s[i] == ";":
            i += 1
            ows()
            pname = token("parameter name")
            ows()
            pval = None
            if i < n and s[i] == "=":
                i += 1
                ows()
                pval = quoted() if i < n and s[i] == '"' else token("parameter value")
                ows()
            params.append((pname, pval))
        out.append((name, params))
        if i < n and s[i] != ",":
            raise ExtensionSyntaxError("unexpected %r at offset %d of %r" % (s[i], i, value))
    return out


class PmdElement:
    """The parameters written in one permessage-deflate offer or answer.

    snct/cnct: server_/client_no_context_takeover present; smwb: the
    server_max_window_bits value or None; cmwb: the client_max_window_bits value,
    True for one without a value (offers only), or None."""

    def __init__(self, snct=False, cnct=False, smwb=None, cmwb=None):
        self.snct, self.cnct, self.smwb, self.cmwb = snct, cnct, smwb, cmwb

    def __repr__(self):
        return "PmdElement(%s)" % pmd_offer(self.snct, self.cnct, self.smwb, self.cmwb)


def _window_value(v):
    # RFC 7692 7.1.2.1/7.1.2.2: 1*DIGIT, a decimal integer 8..15 without leading zeros.
    if v is None or not v.isdigit() or (len(v) > 1 and v[0] == "0") or not 8 <= int(v) <= 15:
        return None
    return int(v)


def pmd_element(params, answer):
    """Validate the parameters of one permessage-deflate element (RFC 7692 7.1).
    Returns a PmdElement, or raises ValueError with the reason."""
    e = PmdElement()
    seen = set()
    for name, val in params:
        if name in seen:
            raise ValueError("parameter %s appears twice (RFC 7692 7)" % name)
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if val is not None:
                raise ValueError("%s has a value %r; it takes none (RFC 7692 7.1.1)" % (name, val))
            if name[0] == "s":
                e.snct = True
            else:
                e.cnct = True
        elif name == "server_max_window_bits":
            bits = _window_value(val)
            if val is None:
                raise ValueError("server_max_window_bits without a value (RFC 7692 7.1.2.1)")
            if bits is None:
                raise ValueError("server_max_window_bits=%s is not 8..15 (RFC 7692 7.1.2.1)" % val)
            e.smwb = bits
        elif name == "client_max_window_bits":
            if val is None and not answer:
                e.cmwb = True
            elif val is None:
                raise ValueError("client_max_window_bits without a value in an answer (RFC 7692 7.1.2.2)")
            else:
                bits = _window_value(val)
                if bits is None:
                    raise ValueError("client_max_window_bits=%s is not 8..15 (RFC 7692 7.1.2.2)" % val)
                e.cmwb = bits
        else:
            raise ValueError("unknown parameter %s (RFC 7692 7)" % name)
    return e


def pmd_offer(snct=False, cnct=False, smwb=None, cmwb=None):
    """An offer element: cmwb True offers client_max_window_bits without a value."""
    parts = [PMD]
    if cnct:
        parts.append("client_no_context_takeover")
    if cmwb is True:
        parts.append("client_max_window_bits")
    elif cmwb is not None:
        parts.append("client_max_window_bits=%s" % cmwb)
    if snct:
        parts.append("server_no_context_takeover")
    if smwb is not None:
        parts.append("server_max_window_bits=%s" % smwb)
    return "; ".join(parts)


class PmdParams:
    """What is in force on a connection after the handshake (RFC 7692 7.1)."""

    def __init__(self, snct, cnct, smwb, cmwb, answer):
        self.server_no_context_takeover = snct
        self.client_no_context_takeover = cnct
        self.server_max_window_bits = smwb
        self.client_max_window_bits = cmwb
        self.answer = answer   # the server's element as sent

    def __repr__(self):
        return ("PmdParams(server: %s window %d; client: %s window %d; answer %r)" % (
            "no takeover" if self.server_no_context_takeover else "takeover", self.server_max_window_bits,
            "no takeover" if self.client_no_context_takeover else "takeover", self.client_max_window_bits,
            self.answer))


def _answer_misfit(offer, ans):
    """Why `ans` cannot be the server's acceptance of `offer` (RFC 7692 7.1), or None."""
    if offer.snct and not ans.snct:
        return "the offer has server_no_context_takeover, the answer lacks it (7.1.1.1)"
    if offer.smwb is not None:
        if ans.smwb is None:
            return "the offer has server_max_window_bits=%d, the answer lacks it (7.1.2.1)" % offer.smwb
        if ans.smwb > offer.smwb:
            return "server_max_window_bits=%d answered to an offer of %d (7.1.2.1)" % (ans.smwb, offer.smwb)
    if ans.cmwb is not None:
        if offer.cmwb is None:
            return "client_max_window_bits answered though not offered (7.1.2.2)"
        if offer.cmwb is not True and ans.cmwb > offer.cmwb:
            return "client_max_window_bits=%d answered to an offer of %d (7.1.2.2)" % (ans.cmwb, offer.cmwb)
    return None


def offered_elements(offer_values):
    """The permessage-deflate offers in our request, in order: a PmdElement for each
    valid one, None for each invalid one (which the server must decline)."""
    out = []
    for v in offer_values:
        try:
            exts = parse_extensions(v)
        except ExtensionSyntaxError:
            out.append(None)
            continue
        for name, params in exts:
            if name != PMD:
                continue
            try:
                out.append(pmd_element(params, answer=False))
            except ValueError:
                out.append(None)
    return out


def check_pmd_answer(offer_values, answer):
    """Judge the server's Sec-WebSocket-Extensions answer (None if absent) to our
    offers (a list of header values). Returns (PmdParams or None, problems)."""
    if answer is None:
        return None, []
    try:
        exts = parse_extensions(answer)
    except ExtensionSyntaxError as e:
        return None, ["Sec-WebSocket-Extensions answer %r: %s" % (answer, e)]
    problems = []
    pmds = [params for name, params in exts if name == PMD]
    others = [name for name, _ in exts if name != PMD]
    if others:
        problems.append("the server answered extension(s) %s, which we cannot speak (RFC 6455 9.1)"
                        % ", ".join(others))
    if not pmds:
        return None, problems
    if len(pmds) > 1:
        problems.append("permessage-deflate answered %d times in %r (RFC 7692 5)" % (len(pmds), answer))
        return None, problems
    try:
        ans = pmd_element(pmds[0], answer=True)
    except ValueError as e:
        problems.append("answer %r: %s" % (answer, e))
        return None, problems
    offers = offered_elements(offer_values)
    fits = [o for o in offers if o is not None and _answer_misfit(o, ans) is None]
    if not fits:
        why = "; ".join("offer %d: %s" % (k + 1, "invalid, must be declined" if o is None
                                          else _answer_misfit(o, ans)) for k, o in enumerate(offers))
        problems.append("answer %r accepts none of our offers %r (%s)" % (answer, offer_values, why or
                                                                            "none offered"))
        return None, problems
    # Where the answer fits several offers, take the safest reading: reset our
    # compressor if any of them promised to, and use the smallest window offered.
    cnct = ans.cnct or any(o.cnct for o in fits)
    if ans.cmwb is not None:
        cmwb = ans.cmwb
    else:
        cmwb = min([o.cmwb for o in fits if o.cmwb not in (None, True)] or [15])
    params = PmdParams(ans.snct, cnct, ans.smwb if ans.smwb is not None else 15, cmwb, answer)
    return params, problems


def deflate_raw(data, wbits=15, level=6, mem_level=8, final=False, zdict=None):
    """A one-off raw DEFLATE stream of `data`: sync-flushed with the tail left off
    (RFC 7692 7.2.1), or with final=True the whole Z_FINISH output (BFINAL set)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -max(9, wbits), mem_level, **({"zdict": zdict} if zdict else {}))
    z = c.compress(data)
    if final:
        return z + c.flush(zlib.Z_FINISH)
    z += c.flush(zlib.Z_SYNC_FLUSH)
    assert z.endswith(PMD_TAIL)
    return z[:-4]


def inflate_raw(data, wbits=15, strict_window=True, d=None):
    """Inflate a message payload (the tail appended). With strict_window and a window
    under 15 bits the inflater produces at most 64 bytes per call, so that a
    back-reference farther than the window (plus < 64 bytes) is an error. Raises
    zlib.error. `d` is an inflater to continue (context takeover)."""
    if d is None:
        d = zlib.decompressobj(wbits=-wbits)
    data = bytes(data) + PMD_TAIL
    if not strict_window or wbits >= 15:
        out = d.decompress(data)
        while d.unconsumed_tail:
            out += d.decompress(d.unconsumed_tail)
        return out
    out = []
    step = 64
    buf = data
    while True:
        chunk = d.decompress(buf, step)
        out.append(chunk)
        buf = d.unconsumed_tail
        if not buf and len(chunk) < step:
            break
    return b"".join(out)


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload", "key")

    def __init__(self, fin, rsv, opcode, masked, payload, key=None):
        self.fin, self.rsv, self.opcode, self.masked, self.payload = fin, rsv, opcode, masked, payload
        self.key = key  # the masking key, for a masked frame

    def __repr__(self):
        name = OPCODE_NAMES.get(self.opcode, "op%d" % self.opcode)
        return "Frame(%s fin=%d rsv=%d len=%d)" % (name, self.fin, self.rsv, len(self.payload))


def short(data, limit=24):
    """A printable, bounded rendering of a payload for reports."""
    data = bytes(data)
    if len(data) > limit:
        return "%r...(%d bytes)" % (data[:limit], len(data))
    return repr(data)


class Conn:
    """One client connection.

    Events the server produced are appended to .events in arrival order:
      ("message", "text"|"binary", payload)   a complete (reassembled) data message
      ("pong", payload)
      ("ping", payload)    a server-initiated ping (answered automatically)
    The close frame is not an event: it is kept in .close_code / .close_reason.
    Problems with what the server sent go to .violations.
    """

    ME, PEER = "client", "server"   # our role and the peer's (wsserver.ServerConn swaps them)
    PEER_MASKS = False              # whether the peer's frames must be masked (RFC 6455 5.1)
    # wss://: an ssl.SSLContext makes connect() speak TLS (None: plain ws://), and the
    # name to ask for (SNI) and verify the certificate against. run.py --tls sets these.
    tls_context = None
    tls_server_name = "localhost"

    def __init__(self, host, port, timeout=10.0):
        self.host, self.port = host, port
        self.timeout = timeout
        self.sock = None
        self.rx = bytearray()
        self.events = []
        self.frames = []            # every frame received, for diagnosis
        self.violations = []
        self.close_received = False
        self.close_code = None
        self.close_reason = b""
        self.close_sent = False
        self.close_initiator = None  # who sent the first close frame: "client" or "server"
        self.tcp_end = None         # None while open, then "eof" or "reset"
        self.tcp_end_time = None
        self.close_time = None
        self.send_error = None      # the first error a send hit (the server had gone)
        self.sent_bytes = 0
        self.resp_status = None
        self.resp_headers = {}
        self.resp_raw = b""
        self._frag_op = None
        self._frag = bytearray()
        self._sending = 0           # >0 while a send_raw is under way
        self._aborted_mid_frame = False
        self._pending = []          # pongs and the close reply, sent between our frames
        self._broken = False        # an unparseable frame header: stop parsing
        # permessage-deflate
        self.pmd = None             # PmdParams once the server accepted an offer
        self.compressed = []        # per message event: did it arrive compressed (RSV1)?
        self.deflate_level = 6
        self._tx = None             # our compressor (kept across messages with context takeover)
        self._rx = None             # our inflater for the server's messages
        self._frag_rsv1 = False
        # TLS (wss://): an SSLObject between two memory BIOs (see the module docstring)
        self.tls = False            # this connection speaks TLS
        self.tls_close_notify = False  # the server's close_notify alert has arrived
        self._tls = None            # the ssl.SSLObject
        self._tls_in = None         # ssl.MemoryBIO: TCP bytes from the server, for TLS to read
        self._tls_out = None        # ssl.MemoryBIO: TLS records for us to send
        self._tls_over = False      # close_notify or a TLS error: no more TLS from the server
        self._wire = bytearray()    # TLS records taken from _tls_out, not yet sent

    # ------------------------------------------------------------ connection

    def connect(self):
        deadline = time.monotonic() + self.timeout
        s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        self.sock = s
        if self.tls_context is not None:
            self.tls = True
            self._tls_in, self._tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self._tls = self.tls_context.wrap_bio(self._tls_in, self._tls_out,
                                                  server_hostname=self.tls_server_name)
            self._tls_handshake(deadline)
        return self

    def _tls_handshake(self, deadline):
        """The TLS handshake within the deadline. Raises ssl.SSLError (an OSError:
        the certificate did not verify, an alert, ...), ConnectionError when TCP ended
        first, Timeout when it does not finish in time."""
        while True:
            try:
                self._tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            self._tls_pull()
            while self._wire:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout("TLS handshake did not finish within %.0f s" % self.timeout)
                _, w, _ = select.select([], [self.sock], [], left)
                if w:
                    try:
                        del self._wire[:self.sock.send(self._wire)]
                    except (BlockingIOError, InterruptedError):
                        pass
            if done:
                # Records that came in with the last of the handshake (a TLS 1.3 session
                # ticket) are read now, not left waiting for more bytes from TCP.
                self.rx += self._tls_decrypt(b"")
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("TLS handshake did not finish within %.0f s" % self.timeout)
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                data = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                raise ConnectionError("the server closed TCP during the TLS handshake")
            self._tls_in.write(data)

    def _tls_pull(self):
        """Move the TLS records the SSLObject has made onto the queue to send."""
        if self._tls_out is not None and self._tls_out.pending:
            self._wire += self._tls_out.read()

    def close_socket(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close_socket()

    # ------------------------------------------------------------- handshake

    def request(self, path="/", key=None, protocols=None, extra_headers=(), method="GET",
                version="13", omit=(), host_header=None):
        """Build an opening handshake request. omit names headers to leave out."""
        key = new_key() if key is None else key
        hdrs = [
            ("Host", host_header or "%s:%d" % (self.host, self.port)),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", version),
        ]
        if protocols:
            hdrs.append(("Sec-WebSocket-Protocol", protocols))
        lines = ["%s %s HTTP/1.1" % (method, path)]
        for k, v in hdrs:
            if k.lower() not in {o.lower() for o in omit}:
                lines.append("%s: %s" % (k, v))
        for k, v in extra_headers:
            lines.append("%s: %s" % (k, v))
        return key, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def read_http_response(self, deadline):
        """Read a response head (and a Content-Length body). Leaves later bytes in rx."""
        while b"\r\n\r\n" not in self.rx:
            if not self._fill(deadline):
                raise HandshakeError("connection ended before a complete HTTP response (got %s)"
                                     % short(self.rx, 200))
        end = self.rx.index(b"\r\n\r\n") + 4
        head = bytes(self.rx[:end])
        del self.rx[:end]
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HandshakeError("bad status line %r" % lines[0])
        status = int(parts[1])
        headers = {}
        for ln in lines[1:]:
            if not ln:
                continue
            if ":" not in ln:
                raise HandshakeError("bad header line %r" % ln)
            k, v = ln.split(":", 1)
            k = k.strip().lower()
            headers[k] = (headers[k] + ", " + v.strip()) if k in headers else v.strip()
        body = b""
        if status != 101 and "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.rx) < n:
                if not self._fill(deadline):
                    break
            body = bytes(self.rx[:n])
            del self.rx[:n]
        self.resp_status, self.resp_headers, self.resp_raw = status, headers, head + body
        return status, headers, body

    def handshake(self, path="/", protocols=None, extra_headers=(), extensions=None):
        """Do a valid opening handshake and check the 101 (RFC 6455 section 4.2.2).

        extensions: a Sec-WebSocket-Extensions value, or a list of them (one header
        line each). The server's answer is judged against them (RFC 7692 7.1); a
        permessage-deflate it accepted is then in force (.pmd)."""
        if isinstance(extensions, str):
            extensions = [extensions]
        extra_headers = list(extra_headers) + [("Sec-WebSocket-Extensions", v) for v in extensions or ()]
        key, req = self.request(path=path, protocols=protocols, extra_headers=extra_headers)
        deadline = time.monotonic() + self.timeout
        self.send_raw(req)
        status, h, _ = self.read_http_response(deadline)
        if status != 101:
            raise HandshakeError("expected 101, got %d: %s" % (status, short(self.resp_raw, 200)))
        if h.get("upgrade", "").lower() != "websocket":
            raise HandshakeError("Upgrade header is %r" % h.get("upgrade"))
        if "upgrade" not in [t.strip().lower() for t in h.get("connection", "").split(",")]:
            raise HandshakeError("Connection header is %r" % h.get("connection"))
        if h.get("sec-websocket-accept") != accept_value(key):
            raise HandshakeError("Sec-WebSocket-Accept is %r, expected %r"
                                 % (h.get("sec-websocket-accept"), accept_value(key)))
        if not extensions:
            # We offered no extension, so the server must not select one (section 9.1).
            if "sec-websocket-extensions" in h:
                raise HandshakeError("server selected an extension we did not offer: %r"
                                     % h["sec-websocket-extensions"])
        else:
            params, problems = check_pmd_answer(extensions, h.get("sec-websocket-extensions"))
            if problems:
                raise HandshakeError("; ".join(problems))
            self.pmd = params
        if "sec-websocket-protocol" in h:
            offered = [p.strip() for p in (protocols or "").split(",") if p.strip()]
            if h["sec-websocket-protocol"] not in offered:
                raise HandshakeError("server selected subprotocol %r, offered %r"
                                     % (h["sec-websocket-protocol"], offered))
        self._parse()  # frames may have come in right behind the 101
        return h

    # --------------------------------------------------------------- sending

    def send_raw(self, data, chop=None, delay=0.0, stop_on_close=True):
        """Send bytes, optionally in pieces of `chop` bytes with `delay` seconds between them.

        Reads whatever the server sends meanwhile, so large writes cannot
        deadlock. Once the server's close frame has arrived (or TCP ended) the
        rest is not sent when stop_on_close is true; returns the bytes sent.
        """
        data = memoryview(bytes(data))
        pieces = [data] if not chop else [data[i:i + chop] for i in range(0, len(data), chop)]
        sent = 0
        self._sending += 1
        try:
            for i, piece in enumerate(pieces):
                if i and delay:
                    self._sleep_reading(delay)
                if stop_on_close and (self.close_received or self.tcp_end):
                    break
                if not self._send_all(piece):
                    break
                sent += len(piece)
        finally:
            self._sending -= 1
        if 0 < sent < len(data):
            # We stopped inside our own frame: anything more we sent would be read as
            # the rest of it, so no close reply follows (the server has failed the
            # connection and must not process more data anyway, RFC 6455 7.1.7).
            self._aborted_mid_frame = True
        self.sent_bytes += sent
        self._flush_pending()
        return sent

    def _reply(self, frame):
        self._pending.append(frame)
        if not self._sending:
            self._flush_pending()

    def _flush_pending(self):
        while self._pending and not self._sending:
            frame = self._pending.pop(0)
            if self._aborted_mid_frame or self.send_error or self.sock is None:
                continue
            self._sending += 1
            try:
                self._send_all(memoryview(frame))
            finally:
                self._sending -= 1

    def _send_all(self, piece):
        if self.tls:
            return self._send_all_tls(piece)
        deadline = time.monotonic() + self.timeout
        off = 0
        while off < len(piece):
            if self.sock is None or self.send_error:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("send stalled for %.0f s" % self.timeout)
            r, w, _ = select.select([self.sock] if self.tcp_end is None else [], [self.sock], [], left)
            if r:
                self._read_once()
            if w:
                try:
                    off += self.sock.send(piece[off:off + (1 << 20)])
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:  # EPIPE, ECONNRESET: the server has gone
                    self.send_error = e
                    return False
        return True

    def _send_all_tls(self, piece):
        """Encrypt one piece (its own TLS record or records) and send it."""
        if self.sock is None or self.send_error:
            return False
        try:
            self._tls.write(piece)   # all of it: the memory BIO takes everything
        except ssl.SSLError as e:    # TLS is broken or shut down: we cannot send
            self.send_error = e
            return False
        self._tls_pull()
        return self._send_wire()

    def _send_wire(self):
        """Send the queued TLS records, reading whatever the server sends meanwhile
        (so large writes cannot deadlock), like _send_all does for ws://."""
        deadline = time.monotonic() + self.timeout
        while self._wire:
            if self.sock is None or self.send_error:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("send stalled for %.0f s" % self.timeout)
            r, w, _ = select.select([self.sock] if self.tcp_end is None else [], [self.sock], [], left)
            if r:
                self._read_once()
            if w and self._wire:
                try:
                    with memoryview(self._wire) as mv:
                        n = self.sock.send(mv[:1 << 20])
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:  # EPIPE, ECONNRESET: the server has gone
                    self.send_error = e
                    return False
                del self._wire[:n]
        return True

    def send_frame(self, opcode, payload=b"", chop=None, delay=0.0, **kw):
        frame = build_frame(opcode, payload, **kw)
        if opcode == CLOSE:
            self.close_sent = True
        return self.send_raw(frame, chop=chop, delay=delay)

    def send_close(self, code=None, reason=b""):
        return self.send_frame(CLOSE, close_payload(code, reason))

    # ----------------------------------------------------- permessage-deflate

    def compress(self, payload):
        """Our compressor's output for one message, per the agreed parameters: a
        window of client_max_window_bits (zlib cannot deflate with 8 bits; with 9 it
        never reaches back more than 250 bytes, so its output fits 8 too), reset per
        message under client_no_context_takeover."""
        p = self.pmd
        if self._tx is None or p.client_no_context_takeover:
            self._tx = zlib.compressobj(self.deflate_level, zlib.DEFLATED, -max(9, p.client_max_window_bits))
        z = self._tx.compress(payload) + self._tx.flush(zlib.Z_SYNC_FLUSH)
        assert z.endswith(PMD_TAIL)
        return z[:-4]

    def message_frames(self, opcode, payload, frag=None, compress=None, mask_key=None):
        """The frames of one message: compressed (RSV1 on the first frame) when
        permessage-deflate is in force, unless compress=False; split into frames of
        `frag` wire bytes (of the compressed payload, like Autobahn's auto-fragment)."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if compress is None:
            compress = self.pmd is not None
        data = self.compress(payload) if compress else payload
        rsv = 4 if compress else 0
        if not frag or len(data) <= frag:
            return build_frame(opcode, data, rsv=rsv, mask_key=mask_key)
        out = []
        for off in range(0, len(data), frag):
            out.append(build_frame(opcode if off == 0 else CONT, data[off:off + frag],
                                   fin=off + frag >= len(data), rsv=rsv if off == 0 else 0,
                                   mask_key=mask_key))
        return b"".join(out)

    def send_message(self, opcode, payload, frag=None, compress=None, chop=None):
        return self.send_raw(self.message_frames(opcode, payload, frag=frag, compress=compress), chop=chop)

    def _inflate(self, payload):
        p = self.pmd
        if self._rx is None or p.server_no_context_takeover or self._rx.eof:
            # A stream that ended with BFINAL (RFC 7692 7.2.3.4 allows it) cannot go on.
            self._rx = None
        d = self._rx or zlib.decompressobj(wbits=-p.server_max_window_bits)
        self._rx = d
        return inflate_raw(payload, p.server_max_window_bits, d=d)

    # ------------------------------------------------------------- receiving

    def _fill(self, deadline):
        """Wait for and read one batch of bytes. False once TCP has ended."""
        while self.tcp_end is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("no data within the deadline")
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                return self._read_once()
        return False

    def _read_once(self):
        try:
            data = self.sock.recv(1 << 18)
        except (BlockingIOError, InterruptedError):
            return True
        except ConnectionResetError:
            self._ended("reset")
            return False
        except OSError:
            self._ended("reset")
            return False
        if not data:
            self._ended("eof")
            return False
        if self.tls:
            data = self._tls_decrypt(data)
            if not data:
                return True
        if self.close_received:
            self.violations.append("%d bytes after the close frame" % len(data))
        self.rx += data
        if self.resp_status == 101:
            self._parse()
        return True

    def _tls_decrypt(self, data):
        """TCP bytes in, the application data they complete out (all of it: nothing
        is left waiting inside the SSLObject, so select() on the socket tells when
        there is more). Notes the server's close_notify and any TLS error."""
        if self._tls_over:
            if self.tls_close_notify:
                self.violations.append("%d bytes on TCP after the TLS close_notify" % len(data))
            return b""
        self._tls_in.write(data)
        out = []
        while True:
            try:
                chunk = self._tls.read(1 << 16)   # one record (at most 16 KiB) a call
            except ssl.SSLWantReadError:   # the rest of a record is still to come
                break
            except ssl.SSLWantWriteError:  # not with memory BIOs; what it made is sent below
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            except ssl.SSLError as e:
                self.violations.append("TLS error from the %s's data: %s" % (self.PEER, e))
                self._tls_over = True
                break
            if not chunk:
                # The server's close_notify (read() returns b"" for it): TLS is closed,
                # TCP not yet; its FIN or reset is still to be read from the socket.
                self.tls_close_notify = True
                self._tls_over = True
                break
            out.append(chunk)
        # Whatever TLS wants to say back (a KeyUpdate, an alert) goes out behind our
        # frames: now unless a send is under way, which sends it.
        self._tls_pull()
        if self._wire and not self._sending and self.tcp_end is None:
            self._sending += 1
            try:
                self._send_wire()
            finally:
                self._sending -= 1
        return b"".join(out)

    def _ended(self, how):
        if self.tcp_end is None:
            self.tcp_end = how
            self.tcp_end_time = time.monotonic()

    def _sleep_reading(self, seconds):
        """Sleep, reading (but not replying) meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self.tcp_end is not None:
                time.sleep(left)
                break
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                self._read_once()

    def pump(self, seconds):
        """Read and process everything that arrives for `seconds`."""
        self._sleep_reading(seconds)
        self._flush_pending()

    def wait(self, predicate, seconds):
        """Read until predicate() is true, TCP ends, or `seconds` pass. Returns predicate()."""
        deadline = time.monotonic() + seconds
        while not predicate() and self.tcp_end is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                self._read_once()
                self._flush_pending()
        return predicate()

    def wait_tcp_end(self, seconds):
        return self.wait(lambda: self.tcp_end is not None, seconds)

    def _parse(self):
        while not self._broken:
            f = self._parse_one()
            if f is None:
                return
            self.frames.append(f)
            self._on_frame(f)

    def _parse_one(self):
        buf = self.rx
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        masked = bool(b1 & 0x80)
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack_from("!H", buf, 2)[0]
            pos = 4
            if n < 126:
                self.violations.append("non-minimal 16-bit length %d (RFC 6455 5.2)" % n)
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack_from("!Q", buf, 2)[0]
            pos = 10
            if n >> 63:
                self.violations.append("64-bit length with the top bit set (RFC 6455 5.2)")
                self._broken = True
                return None
            if n <= 0xFFFF:
                self.violations.append("non-minimal 64-bit length %d (RFC 6455 5.2)" % n)
        key = None
        if masked:
            if len(buf) < pos + 4:
                return None
            key = bytes(buf[pos:pos + 4])
            pos += 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos:pos + n])
        del buf[:pos + n]
        if masked:
            payload = mask_bytes(key, payload)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, masked, payload, key)

    def _on_frame(self, f):
        v = self.violations
        if self.close_received:
            v.append("frame %r after the close frame (RFC 6455 5.5.1)" % f)
            return
        # RFC 6455 5.1: a server MUST NOT mask any frames it sends; a client MUST mask
        # every frame it sends.
        if f.masked and not self.PEER_MASKS:
            v.append("%s sent a masked frame %r (RFC 6455 5.1)" % (self.PEER, f))
        elif self.PEER_MASKS and not f.masked:
            v.append("%s sent an unmasked frame %r (RFC 6455 5.1, 5.3)" % (self.PEER, f))
        # RFC 6455 5.2: RSV MUST be 0 unless an extension defines it. permessage-deflate
        # defines RSV1, on the first frame of a data message only (RFC 7692 6, 6.1).
        allowed = 4 if self.pmd is not None and f.opcode in (TEXT, BINARY) else 0
        if f.rsv & ~allowed:
            if self.pmd is not None and f.rsv & 4 and f.opcode == CONT:
                v.append("%s set RSV1 on a continuation frame %r (RFC 7692 6.1)" % (self.PEER, f))
            elif self.pmd is not None and f.rsv & 4 and f.opcode >= 8:
                v.append("%s set RSV1 on a control frame %r (RFC 7692 6.1)" % (self.PEER, f))
            else:
                v.append("%s set RSV bits %d in %r (RFC 6455 5.2%s)" % (
                    self.PEER, f.rsv, f, "" if self.pmd is None else "; only RSV1 is permessage-deflate's"))
        if f.opcode >= 8:
            # RFC 6455 5.5: control frames have at most 125 bytes and MUST NOT be fragmented.
            if not f.fin:
                v.append("fragmented control frame %r (RFC 6455 5.5)" % f)
            if len(f.payload) > 125:
                v.append("control frame with %d bytes (RFC 6455 5.5)" % len(f.payload))
            if f.opcode == CLOSE:
                self._on_close(f)
            elif f.opcode == PING:
                self.events.append(("ping", f.payload))
                self._reply(build_frame(PONG, f.payload))
            elif f.opcode == PONG:
                self.events.append(("pong", f.payload))
            else:
                v.append("reserved control opcode %d (RFC 6455 5.2)" % f.opcode)
            return
        if f.opcode in (TEXT, BINARY):
            if self._frag_op is not None:
                v.append("new data frame %r inside a fragmented message (RFC 6455 5.4)" % f)
            self._frag_op = f.opcode
            self._frag = bytearray(f.payload)
            self._frag_rsv1 = bool(f.rsv & 4) and self.pmd is not None
        elif f.opcode == CONT:
            if self._frag_op is None:
                v.append("continuation frame with no message to continue (RFC 6455 5.4)")
                return
            self._frag += f.payload
        else:
            v.append("reserved data opcode %d (RFC 6455 5.2)" % f.opcode)
            return
        if f.fin:
            kind = "text" if self._frag_op == TEXT else "binary"
            payload = bytes(self._frag)
            if self._frag_rsv1:
                try:
                    payload = self._inflate(payload)
                except zlib.error as e:
                    v.append("compressed %s message %s does not inflate with %r: %s (RFC 7692 7.2.2)"
                             % (kind, short(payload), self.pmd, e))
            if kind == "text" and not valid_utf8(payload):
                v.append("text message that is not valid UTF-8: %s (RFC 6455 5.6)" % short(payload))
            self.events.append(("message", kind, payload))
            self.compressed.append(self._frag_rsv1)
            self._frag_op = None
            self._frag = bytearray()

    def _on_close(self, f):
        self.close_received = True
        self.close_initiator = self.ME if self.close_sent else self.PEER
        self.close_time = time.monotonic()
        p = f.payload
        if len(p) == 1:
            self.violations.append("close frame with a 1-byte body (RFC 6455 5.5.1)")
        elif len(p) >= 2:
            self.close_code = struct.unpack("!H", p[:2])[0]
            self.close_reason = p[2:]
            if not valid_close_code_from_server(self.close_code):
                self.violations.append("%s sent close code %d, which must not be sent "
                                       "(RFC 6455 7.4)" % (self.PEER, self.close_code))
            if not valid_utf8(self.close_reason):
                self.violations.append("close reason is not valid UTF-8: %s (RFC 6455 5.5.1)"
                                       % short(self.close_reason))
        # RFC 6455 5.5.1: an endpoint that receives a Close and has not sent one MUST
        # send a Close in response; we echo the code as the RFC suggests.
        if not self.close_sent:
            self.close_sent = True
            self._reply(build_frame(CLOSE, close_payload(self.close_code)))

    # ------------------------------------------------------------ reporting

    def describe_end(self):
        if self.close_received:
            s = "close %s" % ("(no code)" if self.close_code is None else self.close_code)
            if self.close_reason:
                s += " reason %s" % short(self.close_reason)
        else:
            s = "no close frame"
        if self.tls_close_notify:
            s += ", TLS close_notify"
        s += ", TCP " + {None: "still open", "eof": "closed (FIN)", "reset": "reset (RST)"}[self.tcp_end]
        return s
