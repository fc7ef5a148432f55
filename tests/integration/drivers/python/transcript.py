"""Canonical transcript for the driver scripts (psycopg_check.py, asyncpg_check.py).

driver_diff runs a script against the primary and through pgmux and compares what it printed, so everything
printed here must depend only on what PostgreSQL answered: values, row counts, digests of large payloads and the
SQLSTATE of errors, never pids, OIDs, timings or addresses. `check` states what PostgreSQL itself answers; a
"CHECK FAILED" line in the direct run means the script, not pgmux, is wrong.
"""
import hashlib
import sys
import traceback


def out(*parts):
    print(" ".join(str(p) for p in parts), flush=True)


def check(condition, what):
    if not condition:
        out("CHECK FAILED:", what)


def digest(data):
    """Short stable digest of str/bytes/anything with a repr, for payloads too long to print."""
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        data = repr(data).encode()
    return hashlib.md5(bytes(data)).hexdigest()[:16]


def error_line(exc):
    """An error as the client sees it: its class and SQLSTATE (psycopg and asyncpg both expose .sqlstate). The
    message, which may hold OIDs or names, goes to stderr (shown when the test fails)."""
    print("%s: %s" % (type(exc).__name__, exc), file=sys.stderr, flush=True)
    return "ERROR %s %s" % (getattr(exc, "sqlstate", None) or "-", type(exc).__name__)


def selected(scenarios, argv):
    """The scenarios named on the command line (all of them, in order, when none is named)."""
    names = argv[1:] or list(scenarios)
    unknown = [n for n in names if n not in scenarios]
    if unknown:
        sys.exit("unknown scenario(s): %s (have: %s)" % (", ".join(unknown), ", ".join(scenarios)))
    return names


def report_uncaught(name, exc):
    """An exception that escaped a scenario: printed (so the diff shows it) and its traceback to stderr."""
    out("UNCAUGHT in", name + ":", error_line(exc))
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
