#!/usr/bin/python3
"""Run Kaze's client-role conformance suite against `kaze client`.

    client_run.py --kaze build/me/apps/kaze            every case
    client_run.py --kaze build/me/apps/kaze 6.4 hs     cases whose id starts with 6.4 or hs
    client_run.py --kaze ... -v                        also a line per passing case
    client_run.py --list                               list the cases

The suite is the server: it listens on a free port of 127.0.0.1 and, for each case
in turn, starts `kaze client --echo [options] ws://127.0.0.1:PORT/<case-id>`
(options per profile, see client_cases.PROFILES), plays its part of the case on
the one connection the client opens, and judges the client's frames, its close
and TCP close, and its exit status (client_cases.py). Prints one line per failing
case, then exactly "N passed, N failed"; exits 1 if any failed. Every client
process it started is killed on the way out, also on errors and signals, and dies
with this process if this process is killed (PR_SET_PDEATHSIG).
"""

import os
import signal
import subprocess
import sys
import tempfile
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import client_cases  # noqa: E402  (must come before cases: it makes the cases' frames unmasked)
import suite  # noqa: E402
import wsserver  # noqa: E402

# Stop starting new cases after this long, so that even against a client that makes
# every case wait out its timeouts the summary comes out before ctest's TIMEOUT (300 s).
# Cases not run count as failed.
DEFAULT_BUDGET = 200.0
# A case that takes longer than this is stopped (its waits are all bounded, so this only
# catches a bug in the suite).
CASE_LIMIT = 90.0


class Client:
    """One `kaze client` process; stdout is discarded, stderr kept for the report."""

    def __init__(self, kaze, args):
        self.args = args
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([kaze, "client"] + list(args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.stderr, preexec_fn=suite.die_with_parent)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def wait(self, timeout):
        """The exit status (negative: killed by that signal), or None if still running."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def stderr_text(self):
        if self.stderr is None:
            return ""
        try:
            self.stderr.seek(0)
            return self.stderr.read()[-4000:].decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def close(self):
        self.kill()
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None


class Clients:
    """Every client started, so that all are killed on every way out."""

    def __init__(self, kaze):
        self.kaze = kaze
        self.running = []

    def launch(self, args):
        c = Client(self.kaze, args)
        self.running.append(c)
        return c

    def stop_all(self):
        for c in self.running:
            try:
                c.close()
            except Exception:  # keep stopping the others
                traceback.print_exc()
        self.running = []


class CaseTimeout(Exception):
    pass


def _on_alarm(signo, frame):
    raise CaseTimeout("the case ran for more than %.0f s" % CASE_LIMIT)


def main():
    ap, opts = suite.arguments(__doc__, DEFAULT_BUDGET)
    pending = suite.select(client_cases.CASES, opts.prefixes)
    status = suite.prelude(ap, opts, pending, 11)
    if status is not None:
        return status
    suite.sigterm_interrupts()
    signal.signal(signal.SIGALRM, _on_alarm)
    clients = Clients(os.path.abspath(opts.kaze))
    listener = wsserver.Listener()

    def run_one(c):
        signal.setitimer(signal.ITIMER_REAL, CASE_LIMIT)
        try:
            return client_cases.run_case(c, listener, clients.launch)
        except CaseTimeout as e:
            return [str(e)]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            clients.stop_all()
            listener.drain()

    try:
        return suite.run_cases(pending, run_one, opts)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        clients.stop_all()
        listener.close()


if __name__ == "__main__":
    sys.exit(main())
