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

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import client_cases  # noqa: E402  (must come before cases: it makes the cases' frames unmasked)
import wsserver  # noqa: E402

# Stop starting new cases after this long, so that even against a client that makes
# every case wait out its timeouts the summary comes out before ctest's TIMEOUT (300 s).
# Cases not run count as failed.
DEFAULT_BUDGET = 200.0
# A case that takes longer than this is stopped (its waits are all bounded, so this only
# catches a bug in the suite).
CASE_LIMIT = 90.0


try:
    # Loaded here, once: loading it in every child (between fork and exec) costs ~20 ms a case.
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None


def _die_with_parent():
    """In the child: get SIGKILL when the parent dies, so no client is ever left behind."""
    try:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except AttributeError:
        pass


class Client:
    """One `kaze client` process; stdout is discarded, stderr kept for the report."""

    def __init__(self, kaze, args):
        self.args = args
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([kaze, "client"] + list(args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.stderr, preexec_fn=_die_with_parent)
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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kaze", help="path to the kaze program")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="print passing cases too, with times; twice: what each case saw")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                    help="seconds after which no new case starts (default %(default)s)")
    ap.add_argument("prefixes", nargs="*", help="run only cases whose id starts with one of these")
    opts = ap.parse_args()

    def selected(c):
        return not opts.prefixes or any(c.id == p or c.id.startswith(p.rstrip(".") + ".")
                                        for p in opts.prefixes)

    pending = [c for c in client_cases.CASES if selected(c)]
    if opts.list:
        for c in pending:
            print("%-8s %-11s %s" % (c.id, c.profile, c.desc))
        return 0
    if not opts.kaze:
        ap.error("--kaze is required")
    if not pending:
        print("no case matches %s" % " ".join(opts.prefixes), file=sys.stderr)
        print("0 passed, 0 failed")
        return 1

    # SIGTERM (ctest, CI) takes the same way out as Ctrl-C, through the finally below.
    def on_term(signo, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, _on_alarm)
    clients = Clients(os.path.abspath(opts.kaze))
    listener = wsserver.Listener()
    passed = failed = 0
    t0 = time.monotonic()
    try:
        for c in pending:
            if time.monotonic() - t0 > opts.budget:
                print("%s: not run: the suite's time budget of %.0f s is used up" % (c.id, opts.budget))
                failed += 1
                continue
            t = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, CASE_LIMIT)
            try:
                problems = client_cases.run_case(c, listener, clients.launch)
            except KeyboardInterrupt:
                raise
            except CaseTimeout as e:
                problems = [str(e)]
            except Exception as e:  # a bug in a case must not stop the suite
                problems = ["error in the suite: %r\n%s" % (e, traceback.format_exc())]
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                clients.stop_all()
                listener.drain()
            dt = time.monotonic() - t
            if problems:
                failed += 1
                print("%s: %s -- %s" % (c.id, c.desc, "; ".join(problems)))
            else:
                passed += 1
                if opts.verbose:
                    print("%s: ok (%.2f s) %s" % (c.id, dt, c.desc))
            if opts.verbose > 1 and c.info:
                print("    saw: %s" % c.info)
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        failed += len(pending) - passed - failed
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        clients.stop_all()
        listener.close()
    if opts.verbose:
        print("total %.1f s" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
