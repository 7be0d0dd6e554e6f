#!/usr/bin/python3
"""Run Kaze's conformance suite against `kaze echo`.

    run.py --kaze build/me/apps/kaze            every case
    run.py --kaze build/me/apps/kaze 6.4 7.9    cases whose id starts with 6.4 or 7.9
    run.py --kaze ... -v                        also a line per passing case
    run.py --kaze ... --tls [prefixes...]       the same cases over wss:// (TLS)
    run.py --list                               list the cases

Starts `kaze echo --port 0 --threads 1 --quiet` (plus options per profile, see
PROFILES) on a free port, runs the cases one connection each, prints one line per
failing case, then exactly "N passed, N failed"; exits 1 if any failed. Every
server it started is stopped on the way out, also on errors and signals, and dies
with this process if this process is killed (PR_SET_PDEATHSIG).

With --tls every case runs over TLS: a throwaway certificate (EC P-256, SAN
DNS:localhost and IP:127.0.0.1) is made with the openssl program in a temporary
directory (removed on the way out), every kaze echo gets --tls-cert/--tls-key,
and the client (wsclient.Conn) verifies the server against that certificate as
"localhost". The cases mean the same over TLS: each send() of the client is its
own TLS record, and how TCP ends (FIN or reset) is judged on the TCP socket
under TLS, a close_notify before the FIN being fine.
"""

import os
import select
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases  # noqa: E402
import suite  # noqa: E402
import wsclient  # noqa: E402
import cases_deflate  # noqa: E402,F401  (adds groups 12, 13 and pmd* to cases.CASES)

cases.CASES.sort(key=cases.Case.key)

HOST = "127.0.0.1"
PROFILES = {
    "default": [],
    "subproto": ["--subprotocol", "chat", "--subprotocol", "superchat"],
    "small": ["--max-message", "1024"],
    # permessage-deflate (cases_deflate.py); "default" negotiates it too.
    "deflate-1m": ["--max-message", "1M"],
    "deflate-shared": ["--deflate-mode", "shared"],
    "deflate-w9": ["--deflate-window", "9", "--deflate-mem-level", "1", "--deflate-min-size", "0"],
    "no-deflate": ["--no-deflate"],
}
START_TIMEOUT = 10.0
# Stop starting new cases after this long, so that even against a server that makes
# every case wait out its timeouts the summary comes out before ctest's TIMEOUT (300 s;
# the longest case can take about 70 s). Cases not run count as failed.
DEFAULT_BUDGET = 200.0
TLS_NAME = "localhost"   # the certificate's name, which the client asks for and verifies


def make_certificate(directory):
    """A throwaway self-signed certificate and key for wss:// (openssl CLI): EC P-256,
    SAN DNS:localhost and IP:127.0.0.1. Returns (cert path, key path)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    cmd = ["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + TLS_NAME,
           "-addext", "subjectAltName=DNS:%s,IP:127.0.0.1" % TLS_NAME,
           "-addext", "basicConstraints=critical,CA:TRUE",
           "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
           "-addext", "extendedKeyUsage=serverAuth"]
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30)
    except FileNotFoundError:
        raise RuntimeError("--tls needs the openssl program, which is not on PATH")
    if r.returncode != 0 or not os.path.exists(cert) or not os.path.exists(key):
        raise RuntimeError("openssl could not make a certificate (status %d): %s"
                           % (r.returncode, r.stdout.decode("utf-8", "replace").strip()[-600:]))
    return cert, key


def client_tls_context(cert):
    """What the client trusts: that certificate only, verified for TLS_NAME."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cert)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Server:
    def __init__(self, kaze, profile, extra_args=()):
        self.kaze, self.profile = kaze, profile
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.stderr = None

    def start(self):
        args = ([self.kaze, "echo", "--port", "0", "--threads", "1", "--quiet"] + PROFILES[self.profile]
                + self.extra_args)
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.stderr, preexec_fn=suite.die_with_parent)
        line = b""
        deadline = time.monotonic() + START_TIMEOUT
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("kaze echo (%s) printed no port within %.0f s" % (self.profile, START_TIMEOUT))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                b = os.read(fd, 1)
                if not b:
                    raise RuntimeError("kaze echo (%s) exited before printing its port: %s"
                                       % (self.profile, self.stderr_tail()))
                line += b
        self.port = int(line.strip())
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_tail(self, n=600):
        if self.stderr is None:
            return ""
        try:
            self.stderr.seek(0)
            data = self.stderr.read()
        except (OSError, ValueError):
            return ""
        return data[-n:].decode("utf-8", "replace").strip()

    def stop(self):
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            p.terminate()  # SIGTERM: graceful shutdown
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        if p.stdout:
            p.stdout.close()
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None


class Servers:
    """One kaze echo per profile, started on first use, restarted if it died."""

    def __init__(self, kaze, extra_args=()):
        self.kaze = kaze
        self.extra_args = list(extra_args)   # for every profile (--tls-cert/--tls-key)
        self.running = {}

    def get(self, profile):
        s = self.running.get(profile)
        if s is None or not s.alive():
            s = Server(self.kaze, profile, self.extra_args).start()
            self.running[profile] = s
        return s

    def stop_all(self):
        for s in self.running.values():
            try:
                s.stop()
            except Exception:  # keep stopping the others
                traceback.print_exc()
        self.running = {}


def main():
    def tls_option(ap):
        ap.add_argument("--tls", action="store_true",
                        help="run over wss:// with a throwaway certificate (needs the openssl program)")
    ap, opts = suite.arguments(__doc__, DEFAULT_BUDGET, tls_option)
    pending = suite.select(cases.CASES, opts.prefixes)
    status = suite.prelude(ap, opts, pending, 9)
    if status is not None:
        return status
    suite.sigterm_interrupts()
    tls_dir = None
    servers = None
    try:
        server_args = []
        if opts.tls:
            tls_dir = tempfile.mkdtemp(prefix="kaze-conformance-tls-")
            try:
                cert, key = make_certificate(tls_dir)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                print("cannot run over TLS: %s" % e, file=sys.stderr)
                print("0 passed, %d failed" % len(pending))
                return 1
            server_args = ["--tls-cert", cert, "--tls-key", key]
            wsclient.Conn.tls_context = client_tls_context(cert)
            wsclient.Conn.tls_server_name = TLS_NAME
        servers = Servers(os.path.abspath(opts.kaze), server_args)

        def run_one(c):
            srv = None
            try:
                srv = servers.get(c.profile)
                problems = cases.run_case(c, HOST, srv.port, pid=srv.proc.pid)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # a bug in a case must not stop the suite
                problems = ["error in the suite: %r\n%s" % (e, traceback.format_exc())]
                srv = servers.running.get(c.profile)
            if problems and srv is not None and srv.alive():
                # A server that crashed may still be exiting when its sockets close;
                # give it a moment so the crash is blamed on this case, not the next.
                try:
                    srv.proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
            if srv is not None and not srv.alive():
                code = srv.proc.returncode if srv.proc else None
                problems.append("kaze echo (%s) exited with status %s during the case: %s"
                                % (c.profile, code, srv.stderr_tail()))
            return problems

        return suite.run_cases(pending, run_one, opts)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        print("0 passed, %d failed" % len(pending))
        return 1
    finally:
        if servers is not None:
            servers.stop_all()
        if tls_dir is not None:
            shutil.rmtree(tls_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
