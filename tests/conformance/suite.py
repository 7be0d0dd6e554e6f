"""What run.py (server role) and client_run.py (client role) share: the command
line, case selection, the loop that runs cases under a time budget and reports
them, and the way child processes are tied to this one.

A runner supplies run_one(case) -> problems (a list of strings, empty when the
case passed); everything else is here.
"""

import argparse
import ctypes
import signal
import sys
import time
import traceback

_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent():
    """In a child (preexec_fn): get SIGKILL when the parent dies, so none is left behind."""
    try:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def arguments(doc, budget, extra=None):
    """The runners' common options; `extra(parser)` adds a runner's own."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kaze", help="path to the kaze program")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="print passing cases too, with times; twice: what each case saw")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--budget", type=float, default=budget,
                    help="seconds after which no new case starts (default %(default)s)")
    if extra:
        extra(ap)
    ap.add_argument("prefixes", nargs="*", help="run only cases whose id starts with one of these")
    opts = ap.parse_args()
    return ap, opts


def select(all_cases, prefixes):
    """The cases whose id is one of `prefixes` or starts with one of them and a dot."""
    return [c for c in all_cases
            if not prefixes or any(c.id == p or c.id.startswith(p.rstrip(".") + ".") for p in prefixes)]


def prelude(ap, opts, pending, profile_width):
    """--list, --kaze and an empty selection; returns an exit status, or None to go on."""
    if opts.list:
        for c in pending:
            print("%-8s %-*s %s" % (c.id, profile_width, c.profile, c.desc))
        return 0
    if not opts.kaze:
        ap.error("--kaze is required")
    if not pending:
        print("no case matches %s" % " ".join(opts.prefixes), file=sys.stderr)
        print("0 passed, 0 failed")
        return 1
    return None


def sigterm_interrupts():
    """SIGTERM (ctest, CI) takes the same way out as Ctrl-C, through the runners' finally."""
    def on_term(signo, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)


def run_cases(pending, run_one, opts):
    """Runs every case in turn; prints one line per failure (and per pass with -v), then
    exactly "N passed, N failed". Cases not started before the budget ran out, or left
    by an interrupt, count as failed. Returns the exit status (1 if any failed)."""
    passed = failed = 0
    t0 = time.monotonic()
    try:
        for c in pending:
            if time.monotonic() - t0 > opts.budget:
                print("%s: not run: the suite's time budget of %.0f s is used up" % (c.id, opts.budget))
                failed += 1
                continue
            t = time.monotonic()
            try:
                problems = run_one(c)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # a bug in a case must not stop the suite
                problems = ["error in the suite: %r\n%s" % (e, traceback.format_exc())]
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
    if opts.verbose:
        print("total %.1f s" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0
