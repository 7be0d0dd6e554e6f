#!/usr/bin/python3
"""TLS tests: peers that put data and the end of their TLS stream (close_notify)
into one TCP segment, as real peers often do, to check that Kaze notices the
end even though no further bytes will wake it up.

Python's ssl.SSLObject over memory BIOs builds the exact bytes; each send is
one sendall() on loopback.

    py_tls_eof.py server CERT KEY
        A minimal wss:// echo server on 127.0.0.1 (the port it prints first).
        When the client sends its close frame, it answers with its close frame
        and its close_notify in one segment, then waits (up to 8 s) for the
        client to end the connection and prints
        "conn ended by the client after S s" (or "... still open after 8 s").
        One connection at a time; SIGTERM stops it.
    py_tls_eof.py client PORT CA
        Connects to a wss:// echo server (kaze echo) on 127.0.0.1:PORT, verifying
        its certificate for localhost, opens a WebSocket, then sends one text
        message and its close_notify in one segment, without a close frame.
        Prints "echo MESSAGE" if the echo still came, then
        "server ended the connection after S s" (or "... still open after 8 s").
"""
import base64
import hashlib
import os
import select
import signal
import socket
import ssl
import struct
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WAIT = 8.0


class Tls:
    """An SSLObject over memory BIOs on a connected socket."""

    def __init__(self, sock, ctx, server_side, server_hostname=None):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=server_side,
                                server_hostname=server_hostname)
        self.plain = b""  # decrypted, not yet taken
        self.eof = False  # the peer's close_notify or FIN came
        self.fin = False  # the peer's FIN came

    def flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def pull(self, timeout):
        """Reads once from the socket into the TLS object; False at FIN or timeout."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return False
        data = self.sock.recv(65536)
        if not data:
            self.inc.write_eof()
            self.eof = self.fin = True
            return False
        self.inc.write(data)
        return True

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                if not self.pull(10):
                    raise RuntimeError("TLS handshake: the peer went away")

    def read_some(self, timeout=10):
        """Decrypts what has come; waits for more if nothing has."""
        while True:
            try:
                while True:
                    chunk = self.obj.read(65536)
                    if not chunk:  # close_notify
                        self.eof = True
                        return
                    self.plain += chunk
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                self.eof = True
                return
            if self.plain:
                return
            if not self.pull(timeout):
                return

    def take(self, n, timeout=10):
        while len(self.plain) < n and not self.eof:
            before = len(self.plain)
            self.read_some(timeout)
            if len(self.plain) == before and not self.eof:
                raise RuntimeError("nothing more came")
        if len(self.plain) < n:
            raise RuntimeError("the peer ended the stream early")
        out, self.plain = self.plain[:n], self.plain[n:]
        return out

    def take_until(self, marker):
        while marker not in self.plain:
            before = len(self.plain)
            self.read_some()
            if len(self.plain) == before:
                raise RuntimeError(f"no {marker!r} came")
        i = self.plain.index(marker) + len(marker)
        out, self.plain = self.plain[:i], self.plain[i:]
        return out

    def write(self, data):
        """Encrypts into the outgoing BIO; flush() sends."""
        self.obj.write(data)

    def close_notify(self):
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass  # our close_notify is in the BIO; the peer's has not come


def frame(opcode, payload, mask):
    head = bytes([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(tls):
    b0, b1 = tls.take(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", tls.take(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", tls.take(8))[0]
    key = tls.take(4) if b1 & 0x80 else None
    payload = tls.take(n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, payload


def wait_end(sock, start):
    """Seconds until the peer's FIN (or reset), or None after WAIT."""
    deadline = start + WAIT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            return None
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except ConnectionResetError:
            return time.monotonic() - start


def serve(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    print(lsock.getsockname()[1], flush=True)
    while True:
        sock, _ = lsock.accept()
        try:
            serve_one(sock, ctx)
        except Exception as e:  # noqa: BLE001 - report and serve the next
            print(f"conn error: {type(e).__name__}: {e}", flush=True)
        finally:
            sock.close()


def serve_one(sock, ctx):
    tls = Tls(sock, ctx, server_side=True)
    tls.handshake()
    req = tls.take_until(b"\r\n\r\n").decode("latin-1")
    wskey = next(line.split(":", 1)[1].strip() for line in req.split("\r\n")
                 if line.lower().startswith("sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(wskey.encode() + GUID).digest()).decode()
    tls.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
    tls.flush()
    while True:
        op, payload = read_frame(tls)
        if op in (1, 2):
            tls.write(frame(op, payload, mask=False))
            tls.flush()
        elif op == 9:
            tls.write(frame(10, payload, mask=False))
            tls.flush()
        elif op == 8:
            # The close frame and close_notify, one segment.
            tls.write(frame(8, payload[:2], mask=False))
            tls.close_notify()
            start = time.monotonic()
            tls.flush()
            took = wait_end(sock, start)
            if took is None:
                print(f"conn still open after {WAIT:.0f} s", flush=True)
            else:
                print(f"conn ended by the client after {took:.2f} s", flush=True)
            return


def client(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = Tls(sock, ctx, server_side=False, server_hostname="localhost")
    tls.handshake()
    key = base64.b64encode(os.urandom(16)).decode()
    tls.write((f"GET / HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    tls.flush()
    head = tls.take_until(b"\r\n\r\n").decode("latin-1")
    if not head.startswith("HTTP/1.1 101"):
        print(f"upgrade refused: {head.splitlines()[0]}")
        return 1
    # One message and the end of our TLS stream, one segment.
    tls.write(frame(1, b"last words", mask=True))
    tls.close_notify()
    start = time.monotonic()
    tls.flush()
    try:
        op, payload = read_frame(tls)
        if op == 1:
            print(f"echo {payload.decode()}", flush=True)
    except Exception:  # noqa: BLE001 - the echo is optional
        pass
    took = time.monotonic() - start if tls.fin else wait_end(sock, start)
    if took is None:
        print(f"server still open after {WAIT:.0f} s")
    else:
        print(f"server ended the connection after {took:.2f} s")
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "server":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        serve(argv[2], argv[3])
        return 0
    if len(argv) == 4 and argv[1] == "client":
        return client(int(argv[2]), argv[3])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
