"""The server side of a WebSocket connection, for the client-role conformance suite.

Python 3 standard library only. client_run.py plays Autobahn's "fuzzingserver":
each case accepts one connection from `kaze client --echo`, reads and checks the
opening handshake request, answers it (validly, or in one of many invalid ways),
then sends frames and judges what the client does.

ServerConn is wsclient.Conn with the roles turned round, so that everything Conn
does for the server-role suite (sending frames in chops, reading while writing,
reassembling and judging what arrives, the close handshake, permessage-deflate)
serves here too:

  - the peer is a client: its frames MUST be masked (RFC 6455 5.1) and the mask
    keys must not repeat (5.3: unpredictable); Conn checks everything else
    (RSV bits, control frame rules, minimal length encoding, UTF-8 of text
    messages and close reasons, valid close codes);
  - our frames go out unmasked: client_cases.py sets wsclient.MASK_FRAMES to
    False before the cases are built, so build_frame() masks nothing unless told;
  - permessage-deflate's directions swap: we compress with the server_*
    parameters and inflate the client's messages with the client_* ones
    (RFC 7692 7.1);
  - the server closes TCP first (RFC 6455 7.1.1): shutdown() sends our FIN once
    the close handshake is done, and tcp_state() tells afterwards which side
    held TIME_WAIT, i.e. which side closed first.
"""

import base64
import binascii
import select
import socket
import time
import zlib

import wsclient
from wsclient import HandshakeError, accept_value, inflate_raw

# A request head larger than this is a problem in itself (a client has no reason
# to send more than a few hundred bytes).
MAX_REQUEST_HEAD = 64 * 1024


class Listener:
    """A listening socket on a free port of 127.0.0.1 (bound to port 0)."""

    def __init__(self, host="127.0.0.1"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 0))
        s.listen(16)
        s.setblocking(False)
        self.sock = s
        self.host, self.port = s.getsockname()

    def accept(self, timeout, alive=None):
        """The next connection, or None after `timeout` seconds, or as soon as
        alive() (the client process is running) turns false with nothing pending."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], min(left, 0.05))
            if r:
                try:
                    sock, _ = self.sock.accept()
                    return sock
                except (BlockingIOError, InterruptedError):
                    continue
            if alive is not None and not alive():
                r, _, _ = select.select([self.sock], [], [], 0)
                if not r:
                    return None

    def drain(self):
        """Accept and close whatever connections are pending; returns how many."""
        n = 0
        while True:
            r, _, _ = select.select([self.sock], [], [], 0)
            if not r:
                return n
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return n
            sock.close()
            n += 1

    def close(self):
        self.sock.close()


class Request:
    """A parsed opening handshake request (RFC 6455 4.1, RFC 7230 3)."""

    def __init__(self, head):
        self.raw = head
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise HandshakeError("bad request line %r" % lines[0])
        self.method, self.target, self.version = parts
        self.headers = []   # (name as sent, value with surrounding whitespace removed)
        for ln in lines[1:]:
            if not ln:
                continue
            if ":" not in ln or ln[0] in " \t":
                raise HandshakeError("bad header line %r (RFC 7230 3.2)" % ln)
            k, v = ln.split(":", 1)
            if k != k.strip() or not k:
                raise HandshakeError("bad header name in %r (RFC 7230 3.2.4)" % ln)
            self.headers.append((k, v.strip(" \t")))

    def all(self, name):
        """Every value of a header, in order."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name):
        """The values of a header combined into one list (RFC 7230 3.2.2), or None."""
        vals = self.all(name)
        return ", ".join(vals) if vals else None

    def tokens(self, name):
        """A comma-separated header's elements, lower-cased."""
        return [t.strip().lower() for t in (self.get(name) or "").split(",") if t.strip()]

    @property
    def key(self):
        keys = self.all("Sec-WebSocket-Key")
        return keys[0] if len(keys) == 1 else None


def key_problem(key):
    """Why a Sec-WebSocket-Key is not a base64-encoded 16-byte nonce (RFC 6455 4.1 item 7)."""
    if key is None:
        return "no Sec-WebSocket-Key, or more than one"
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return "Sec-WebSocket-Key %r is not base64" % key
    if len(raw) != 16:
        return "Sec-WebSocket-Key %r decodes to %d bytes, not 16" % (key, len(raw))
    return None


def http_head(status_line, headers):
    """A response head: the status line and (name, value) header lines."""
    lines = [status_line] + ["%s: %s" % (k, v) for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def response_101(key, protocol=None, extensions=None, extra=()):
    """A valid 101 answer to a request with this key (RFC 6455 4.2.2 item 5)."""
    hdrs = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_value(key))]
    if protocol is not None:
        hdrs.append(("Sec-WebSocket-Protocol", protocol))
    if extensions is not None:
        hdrs.append(("Sec-WebSocket-Extensions", extensions))
    return http_head("HTTP/1.1 101 Switching Protocols", hdrs + list(extra))


# TCP states in /proc/net/tcp (include/net/tcp_states.h).
_TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
               6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}
# States only the side that sent the first FIN goes through (or both, in a simultaneous close).
ACTIVE_CLOSE_STATES = ("FIN_WAIT1", "FIN_WAIT2", "CLOSING", "TIME_WAIT")


def tcp_state(local, remote):
    """The state of the IPv4 TCP socket local -> remote ((ip, port) pairs) in
    /proc/net/tcp, or None when there is none (closed and gone)."""
    def enc(addr):
        ip, port = addr
        return "%08X:%04X" % (int.from_bytes(socket.inet_aton(ip), "little"), port)
    want_l, want_r = enc(local), enc(remote)
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) > 3 and parts[1] == want_l and parts[2] == want_r:
                    return _TCP_STATES.get(int(parts[3], 16), parts[3])
    except (OSError, StopIteration, ValueError):
        pass
    return None


class ServerConn(wsclient.Conn):
    """The server end of one accepted connection.

    Before open() the bytes the client sends pile up in .rx unparsed (the request,
    and anything the client wrongly sends before our answer); after it, frames are
    parsed and judged as wsclient.Conn does, with the roles swapped (see the
    module docstring). .events holds the client's messages and pongs, .violations
    what the client did wrong at the frame level.
    """

    ME, PEER = "server", "client"
    PEER_MASKS = True

    def __init__(self, sock, timeout=10.0):
        host, port = sock.getpeername()
        super().__init__(host, port, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        self.local = sock.getsockname()    # our end: the listener's address
        self.remote = (host, port)          # the client's end
        self.request = None
        self.early_bytes = b""              # what the client sent right behind its request
        self.fin_sent = False
        self.peer_ended_before_fin = False  # the client's FIN or RST came before ours
        self.masked_frames = 0
        self.mask_keys = set()

    # ------------------------------------------------------------- handshake

    def read_request(self, deadline):
        """Read the request head (RFC 6455 4.1). Raises HandshakeError or Timeout."""
        while b"\r\n\r\n" not in self.rx:
            if len(self.rx) > MAX_REQUEST_HEAD:
                raise HandshakeError("request head longer than %d bytes: %s"
                                     % (MAX_REQUEST_HEAD, wsclient.short(self.rx, 200)))
            if not self._fill(deadline):
                raise HandshakeError("the client closed TCP (%s) before a complete request; got %s"
                                     % (self.tcp_end, wsclient.short(self.rx, 200)))
        end = self.rx.index(b"\r\n\r\n") + 4
        head = bytes(self.rx[:end])
        del self.rx[:end]
        self.early_bytes = bytes(self.rx)
        self.request = Request(head)
        return self.request

    def respond(self, data, chop=None, delay=0.0):
        """Send (part of) a response head, as it is."""
        return self.send_raw(data, chop=chop, delay=delay, stop_on_close=False)

    def open(self, pmd=None):
        """After a 101: frames from now on. pmd: the permessage-deflate parameters
        agreed (wsclient.PmdParams), or None."""
        self.resp_status = 101  # what Conn looks at before parsing frames
        self.pmd = pmd
        self._parse()

    # ----------------------------------------------------- permessage-deflate

    def compress(self, payload):
        """Our compressor's output for one message: a window of
        server_max_window_bits (9 for 8: zlib cannot deflate with 256 bytes, and with
        512 it reaches back at most 250), reset per message under
        server_no_context_takeover (RFC 7692 7.1.1.1, 7.1.2.1)."""
        p = self.pmd
        if self._tx is None or p.server_no_context_takeover:
            self._tx = zlib.compressobj(self.deflate_level, zlib.DEFLATED, -max(9, p.server_max_window_bits))
        z = self._tx.compress(payload) + self._tx.flush(zlib.Z_SYNC_FLUSH)
        return z[:-4]

    def _inflate(self, payload):
        """Inflate a client message: a fresh inflater per message under
        client_no_context_takeover (a client that kept its context then fails to
        inflate), the window of client_max_window_bits checked strictly."""
        p = self.pmd
        if self._rx is None or p.client_no_context_takeover or self._rx.eof:
            self._rx = zlib.decompressobj(wbits=-p.client_max_window_bits)
        return inflate_raw(payload, p.client_max_window_bits, d=self._rx)

    # ------------------------------------------------------------- receiving

    def _on_frame(self, f):
        if f.masked:
            self.masked_frames += 1
            if len(self.mask_keys) < 4096:
                self.mask_keys.add(f.key)
        super()._on_frame(f)

    def mask_key_problem(self):
        """RFC 6455 5.3: the masking key MUST be unpredictable, fresh for each frame.
        Only the blatant case is checked: three frames or more, all with one key."""
        if self.masked_frames >= 3 and len(self.mask_keys) == 1:
            return ("all %d frames of the client were masked with the same key %s (RFC 6455 5.3: a "
                    "fresh, unpredictable key per frame)" % (self.masked_frames, next(iter(self.mask_keys)).hex()))
        return None

    # ------------------------------------------------------------ closing TCP

    def shutdown(self):
        """Send our FIN (the server closes TCP first, RFC 6455 7.1.1), after any
        pending reply (our close frame)."""
        if self.fin_sent or self.sock is None:
            return
        self._flush_pending()
        self.peer_ended_before_fin = self.tcp_end is not None
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.fin_sent = True

    def end_tcp(self, seconds):
        """Our FIN, then wait for the client's; True when it came (FIN or RST)."""
        self.shutdown()
        return self.wait_tcp_end(seconds)

    def client_tcp_state(self):
        """The client socket's TCP state now (see tcp_state)."""
        return tcp_state(self.remote, self.local)
