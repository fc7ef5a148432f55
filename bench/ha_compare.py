#!/usr/bin/python3
"""What applications feel when the primary goes away, through pgmux and through Pgpool-II, in one run (issue 12,
item 7). Each scenario runs on a fresh cluster of its own (tests/support/cluster.sh: a primary and two streaming
standbys on 127.0.0.1, synchronous replication with standby1 as the synchronous standby) under the same load:

  4 persistent writers   BEGIN; INSERT (writer, seq); COMMIT, then read their own row back, on one connection
  2 new-client writers   a new connection per INSERT
  2 readers              each persistent writer's max(seq) (routed to standbys), checked against what was
                         acknowledged before the read was sent

Scenarios (--scenarios, comma-separated; default all):
  kill-external-tx       primary stopped with `pg_ctl stop -m immediate`, standby1 promoted 70 ms later by hand
  kill-external-session  the same, pgmux in session pooling
  kill-auto              the primary stopped; pgmux promotes (failover.mode pgmux) and repoints standby2
  switchover             pgmux's SWITCHOVER TO standby1 (demote_command / follow_primary_command = cluster.sh)
  kill-pgpool            Pgpool-II (Debian's pgpool2) with failover_command promoting standby1; the primary
                         stopped as above (health_check period 1 s, max_retries 2 for both proxies)
  patroni-switchover     tests/support/patroni_cluster.sh's pair (node1 leader, asynchronous replication), pgmux
                         with topology.source patroni: SWITCHOVER TO node2 (pgmux drains, then Patroni switches)
  patronictl-switchover  the same pair: `patronictl switchover` to node2 run behind pgmux's back

Printed per scenario (one row each, then the table in Markdown):
  write gap ms   the longest time without any acknowledged write, around the event
  after promotion ms (new client)
                 kill-external rows: from `pg_ctl promote` returning (the new primary takes writes) to the
                 first write acknowledged through the proxy, and to the first new client's
  failed         transactions that failed and did not commit (known from the error), new-client attempts apart
  ambiguous      errors at COMMIT (the client cannot know); resolved at the end: how many had committed
  dropped        persistent clients whose connection broke: between transactions / inside one
  lost           acknowledged commits missing from the new primary (0 expected: synchronous replication, or a
                 planned switchover)
  stale reads    reads missing a commit acknowledged before the read was sent: before / during / after the event
                 (during: until writes succeed again); orphan reads: reads sent after writes succeed again and
                 served by a standby left on the old timeline (standby2 after an unplanned failover nobody
                 repointed), which never sees another commit

usage: bench/ha_compare.py [--pgmux BIN] [--pgpool BIN] [--baseport N] [--scenarios a,b] [--after SECONDS] [--keep]
Ports: the cluster from --baseport (default 27300) up to +21, the proxy on +30 (+31: Pgpool's PCP).
Traffic goes to 127.0.0.1 only; every process started here is stopped by its pid.
"""
import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

import psycopg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PERSISTENT, NEW_CLIENT, READERS = 4, 2, 2
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ha_clusters import CLUSTER_SH, Cluster, PatroniCluster, connect  # noqa: E402
from ha_proxies import PgmuxProxy, PgpoolProxy  # noqa: E402


class Record:
    """Everything the clients saw, with monotonic times; shared by the client threads under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acks = []  # (time, writer, seq): commits acknowledged
        self.acked_max = {}  # writer -> highest acknowledged seq
        self.failed = []  # (time, what)
        self.failed_new = []  # (time, what): new-client attempts
        self.ambiguous = []  # (writer, seq)
        self.dropped = {"between": 0, "inside": 0}
        self.reads = []  # (sent, expected, got, port)
        self.t0 = 0.0  # the event
        self.promoted_at = None  # kill+promote: when `pg_ctl promote` returned (the new primary takes writes)

    def ack(self, writer, seq):
        with self.lock:
            self.acks.append((time.monotonic(), writer, seq))
            self.acked_max[writer] = max(seq, self.acked_max.get(writer, 0))


def persistent_writer(proxy_port, writer, rec, stop):
    conn, seq = None, 0
    while not stop.is_set():
        if conn is None:
            try:
                conn = connect(proxy_port)
            except psycopg.Error:
                time.sleep(0.05)
                continue
        seq += 1
        step = "BEGIN"
        try:
            conn.execute("BEGIN")
            step = "INSERT"
            conn.execute("INSERT INTO ha_log VALUES (%s, %s)", (writer, seq))
            step = "COMMIT"
            conn.execute("COMMIT")
            rec.ack(writer, seq)
            got, = conn.execute("SELECT max(seq) FROM ha_log WHERE writer = %s", (writer,)).fetchone()
            if got is None or got < seq:
                with rec.lock:
                    rec.reads.append((time.monotonic(), seq, got or 0, None))
        except psycopg.Error as e:
            broken = conn.broken or conn.closed
            with rec.lock:
                if step == "COMMIT" and (broken or (e.sqlstate or "").startswith("08")):
                    rec.ambiguous.append((writer, seq))
                else:
                    rec.failed.append((time.monotonic(), f"{step}: {e.sqlstate} {str(e).strip()[:120]}"))
                if broken:
                    rec.dropped["between" if step == "BEGIN" else "inside"] += 1
            if broken:
                conn = None
            else:
                try:
                    conn.execute("ROLLBACK")
                except psycopg.Error:
                    conn = None


def new_client_writer(proxy_port, writer, rec, stop):
    seq = 0
    while not stop.is_set():
        seq += 1
        try:
            with connect(proxy_port) as conn:
                conn.execute("INSERT INTO ha_log VALUES (%s, %s)", (writer, seq))
            rec.ack(writer, seq)
        except psycopg.Error as e:
            with rec.lock:
                rec.failed_new.append((time.monotonic(), f"new client: {e.sqlstate} {str(e).strip()[:120]}"))
            time.sleep(0.01)


# Each persistent writer's highest seq, in writer order, as one row (a writer with no row yet reads 0).
READ_SQL = ("SELECT array_agg(coalesce(m, 0) ORDER BY w), inet_server_port() "
            f"FROM generate_series(0, {PERSISTENT - 1}) w "
            "LEFT JOIN LATERAL (SELECT max(seq) m FROM ha_log WHERE writer = w) x ON true")


def reader(proxy_port, rec, stop):
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = connect(proxy_port)
            with rec.lock:
                expected = [rec.acked_max.get(w, 0) for w in range(PERSISTENT)]
            sent = time.monotonic()
            got, port = conn.execute(READ_SQL).fetchone()
            # Stale: it misses some writer's commit acknowledged before the read was sent. Recorded as the
            # shortfall of the writer that misses most (0: up to date).
            behind = max(e - (g or 0) for e, g in zip(expected, got))
            with rec.lock:
                rec.reads.append((sent, behind, 0, port))
        except psycopg.Error:
            conn = None
            time.sleep(0.02)
        time.sleep(0.005)


def run_load(proxy_port, event, after, rec, sample=None):
    """Warm-up, the event (returns its start time), `after` seconds more; then every client stops. `sample`, if
    given, is called every 0.5 s meanwhile (the proxy's own view, for the logs)."""
    stop = threading.Event()
    threads = [threading.Thread(target=persistent_writer, args=(proxy_port, w, rec, stop)) for w in range(PERSISTENT)]
    if sample:
        threads.append(threading.Thread(target=lambda: [sample() for _ in iter(lambda: stop.wait(0.5), True)]))
    threads += [threading.Thread(target=new_client_writer, args=(proxy_port, 100 + w, rec, stop))
                for w in range(NEW_CLIENT)]
    threads += [threading.Thread(target=reader, args=(proxy_port, rec, stop)) for _ in range(READERS)]
    for t in threads:
        t.start()
    time.sleep(3)
    t0 = time.monotonic()
    event()
    time.sleep(after)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    return t0


def write_gap(rec, t0):
    """The longest stretch without an acknowledged write that ends after the event, and its end: when writes came
    back (writes acknowledged just after the event may still be the old primary's, before it stopped)."""
    times = sorted(a[0] for a in rec.acks)
    before = [t for t in times if t < t0]
    last = before[-1] if before else t0
    gap, back = 0.0, float("inf")
    for t in (t for t in times if t >= t0):
        if t - last > gap:
            gap, back = t - last, t
        last = t
    return gap, back


def back_after_promotion(rec):
    """Milliseconds from the promotion to the first acknowledged write, any writer's and a new client's (the
    issue's target: a new client's write within 300 ms); "-" where pgmux or Pgpool-II promotes."""
    if rec.promoted_at is None:
        return "-"
    firsts = []
    for new_client in (False, True):
        times = [t for t, writer, _ in rec.acks if t >= rec.promoted_at and (not new_client or writer >= PERSISTENT)]
        firsts.append(f"{(min(times) - rec.promoted_at) * 1000:.0f}" if times else "none")
    return f"{firsts[0]} ({firsts[1]})"


def committed_rows(cluster):
    """(writer, seq) on the one primary left, or None when there is not exactly one."""
    primaries = cluster.primaries()
    if len(primaries) != 1:
        return None, primaries
    with connect(cluster.ports[primaries[0]], "postgres", "app") as c:
        return set(c.execute("SELECT writer, seq FROM ha_log").fetchall()), primaries


def summarize(name, rec, t0, cluster, orphan_port):
    gap, back = write_gap(rec, t0)
    rows, primaries = committed_rows(cluster)
    lost = "?" if rows is None else sum(1 for _, w, s in rec.acks if (w, s) not in rows)
    resolved = "?" if rows is None else sum(1 for w, s in rec.ambiguous if (w, s) in rows)
    stale = {"before": 0, "during": 0, "after": 0}
    orphan = 0
    stale_where = {}
    for sent, expected, got, port in rec.reads:
        if got < expected:
            when = "before" if sent < t0 else "during" if sent < back else "after"
            stale[when] += 1
            where = f"{when} on {port or 'its own connection'}"
            stale_where[where] = stale_where.get(where, 0) + 1
        orphan += orphan_port is not None and port == orphan_port and sent >= back
    return {
        "scenario": name,
        "write gap ms": f"{gap * 1000:.0f}",
        "after promotion ms (new client)": back_after_promotion(rec),
        "failed (new-client)": f"{len(rec.failed)} ({len(rec.failed_new)})",
        "ambiguous (committed)": f"{len(rec.ambiguous)} ({resolved})",
        "dropped between / inside": f"{rec.dropped['between']} / {rec.dropped['inside']}",
        "lost": str(lost),
        "stale before / during / after": f"{stale['before']} / {stale['during']} / {stale['after']}",
        "orphan reads": str(orphan),
        "reads": str(sum(1 for r in rec.reads if r[3] is not None)),
        "primary after": ",".join(primaries) or "none",
    }, stale_where


SCENARIOS = {
    # name: (proxy kind, pool mode, failover mode, event)
    "kill-external-tx": ("pgmux", "transaction", "external", "kill+promote"),
    "kill-external-session": ("pgmux", "session", "external", "kill+promote"),
    "kill-auto": ("pgmux", "transaction", "pgmux", "kill"),
    "switchover": ("pgmux", "transaction", "external", "switchover"),
    "kill-pgpool": ("pgpool", None, None, "kill"),
    "patroni-switchover": ("pgmux", "transaction", "external", "switchover"),
    "patronictl-switchover": ("pgmux", "transaction", "external", "patronictl"),
}
PATRONI_SCENARIOS = ("patroni-switchover", "patronictl-switchover")


def run_scenario(name, args, work):
    kind, pool_mode, failover, event_kind = SCENARIOS[name]
    patroni = name in PATRONI_SCENARIOS
    cluster = PatroniCluster(work, args.baseport) if patroni else Cluster(work, args.baseport)
    target = "node2" if patroni else "standby1"
    proxy = None
    try:
        if kind == "pgmux":
            proxy = PgmuxProxy(args.pgmux, work, args.baseport + 30, cluster, pool_mode, failover, CLUSTER_SH)
        else:
            proxy = PgpoolProxy(args.pgpool, work, args.baseport + 30, cluster)
        proxy.wait_serving_reads()

        def event():
            if event_kind == "switchover":
                proxy.switchover(target)
                return
            if event_kind == "patronictl":
                cluster.patronictl_switchover("node1", "node2")
                return
            cluster.kill("primary")
            if event_kind == "kill+promote":
                time.sleep(0.07)
                cluster.promote("standby1")  # pg_ctl promote waits until it takes writes
                rec.promoted_at = time.monotonic()

        rec = Record()
        t0 = rec.t0 = run_load(proxy.port, event, args.after, rec, getattr(proxy, "sample_pools", None))
        # An orphan exists only where nobody repointed standby2 (an unplanned failover followed by hand).
        orphan = cluster.ports["standby2"] if event_kind.startswith("kill") and failover != "pgmux" else None
        row, stale_where = summarize(name, rec, t0, cluster, orphan)
        if stale_where:
            print("   stale reads by server port: " + ", ".join(f"{k}: {v}" for k, v in sorted(stale_where.items())))
        return row, rec
    finally:
        if proxy:
            proxy.stop()
        cluster.stop()


def print_table(rows):
    keys = list(rows[0].keys())
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(r[k] for k in keys) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pgmux", default=os.path.join(REPO, "build", "proxy", "pgmux"))
    p.add_argument("--pgpool", default=shutil.which("pgpool") or "/usr/sbin/pgpool")
    p.add_argument("--baseport", type=int, default=27300)
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help="default: all (patroni* need patroni and etcd-server installed)")
    p.add_argument("--after", type=float, default=8, help="seconds of load after the event")
    p.add_argument("--keep", action="store_true", help="keep each scenario's directory (logs, configs)")
    args = p.parse_args()
    rows = []
    for name in args.scenarios.split(","):
        work = tempfile.mkdtemp(prefix=f"pgmux-ha-{name}-")
        os.chmod(work, 0o755)
        print(f"== {name} (work dir {work})", flush=True)
        try:
            row, rec = run_scenario(name, args, work)
            rows.append(row)
            print("   " + "; ".join(f"{k}: {v}" for k, v in row.items()), flush=True)
            for t, what in (rec.failed + rec.failed_new)[:8]:
                print(f"   failed {t - rec.t0:+.3f} s: {' '.join(what.split())}", flush=True)
            # Each writer inserts each key once: a duplicate means a statement ran twice (or rows from elsewhere).
            duplicates = [w for _, w in rec.failed if " 23505 " in f" {w} "]
            if duplicates:
                print(f"   ANOMALY: {len(duplicates)} duplicate-key errors on keys sent once; kept {work}", flush=True)
            if not args.keep and not duplicates:
                shutil.rmtree(work, ignore_errors=True)
        except Exception as e:  # noqa: BLE001 - one scenario's failure is reported, the others still run
            print(f"   scenario failed: {e} (kept {work})", flush=True)
    if rows:
        print()
        print_table(rows)
    return 0 if len(rows) == len(args.scenarios.split(",")) else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
