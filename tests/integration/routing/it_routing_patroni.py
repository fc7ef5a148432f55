#!/usr/bin/python3
"""topology.source patroni end to end (issue 12, item 4), against a real Patroni pair with etcd on 127.0.0.1
(tests/support/patroni_cluster.sh) and two pgmux instances in front of it: A in transaction pooling, B in session
pooling, both following Patroni.

  act 1  both see node1 (Patroni's leader) as the primary, in SHOW BACKENDS and the metrics; writes land there
  act 2  SWITCHOVER TO node2 on A's console under pgbench (both pools): pgmux drains, Patroni switches over;
         zero failed transactions on both, balances consistent, no stale read; B follows without being told. B
         has no Patroni credentials: its own SWITCHOVER is refused by Patroni (401), canceled, and writes go on
  act 3  both watch Patroni's failover key in etcd (topology.etcd_urls). A request Patroni refuses (no such
         candidate) is drained for and canceled: writes resume on node2. Then `patronictl switchover` back to node1
         behind pgmux's back, under pgbench through A (both pools) and B: each pgmux drains before Patroni's fast
         shutdown, so zero failed transactions and no aborted client; a session idle across it (session pooling)
         keeps working, on the same client connection. Then `patronictl switchover --scheduled` to node2, 4 s
         ahead: both pgmux start draining a second before that time, and again nothing fails
  act 4  the leader's (node2's) Patroni daemon is killed: its PostgreSQL keeps running as a primary, and once
         Patroni promotes node1 neither pgmux writes to node2 again (fenced, an alarm) although node2 still accepts
         writes directly; each pgmux follows within one poll of node1 leaving recovery

usage: it_routing_patroni.py PGMUX_BINARY SUPPORT_DIR   (PGMUX_BINARY in the environment wins)
Exit 77 (skipped) only when patroni or etcd is not installed.
"""
import base64
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import psycopg

PGBIN = "/usr/lib/postgresql/15/bin"
BASE = int(os.environ.get("PGMUX_TEST_PATRONI_BASEPORT", "26400"))
NODE_PORT = {"node1": BASE, "node2": BASE + 1}
PORT_A, PORT_B = BASE + 30, BASE + 32
POLL = 0.5  # topology.poll_interval of both pgmux instances

failures = []


def check(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(*args, timeout=120, **kw):
    return subprocess.run(list(args), timeout=timeout, capture_output=True, text=True, **kw)


def connect(port, user="app", dbname="app", **kw):
    return psycopg.connect(host="127.0.0.1", port=port, user=user, password=user, dbname=dbname,
                           connect_timeout=5, autocommit=True, **kw)


def write_port(port):
    """The server port a write through `port` landed on (None when it failed)."""
    try:
        with connect(port) as c:
            return c.execute("INSERT INTO marks (at) VALUES (now()) RETURNING inet_server_port()").fetchone()[0]
    except psycopg.Error as e:
        print(f"      write through {port} failed: {str(e).strip()}", flush=True)
        return None


def idle_session_writes_on(conn, node, what):
    """A session that stayed idle across a change of primary writes on `node`, on its same client connection."""
    try:
        port = conn.execute("INSERT INTO marks (at) VALUES (now()) RETURNING inet_server_port()").fetchone()[0]
        check(port == NODE_PORT[node], f"{what} writes on {node}, same client connection")
    except psycopg.Error as e:
        check(False, f"{what} still works (got: {str(e).strip()})")
    conn.close()


def backends(port):
    with connect(port, user="admin", dbname="pgmux") as c:
        cur = c.execute("SHOW BACKENDS")
        names = [d.name for d in cur.description]
        return {row[names.index("name")]: dict(zip(names, row)) for row in cur.fetchall()}


def wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    check(False, f"{what} within {timeout} s")
    return False


def config(port, pool_mode, patroni_credentials=True):
    c = {
        "listeners": [{"host": "127.0.0.1", "port": port}],
        "workers": 2,
        "backends": [{"name": n, "host": "127.0.0.1", "port": p} for n, p in NODE_PORT.items()],
        "users": [{"name": "app", "password": "app"}, {"name": "postgres", "password": "postgres"},
                  {"name": "admin", "password": "admin"}],
        # app_session: the same database in session pooling, so one pgmux runs pgbench in both pool modes.
        "databases": [{"name": "app", "backends": list(NODE_PORT), "pool_mode": pool_mode, "pool_size": 20},
                      {"name": "app_session", "server_database": "app", "backends": list(NODE_PORT),
                       "pool_mode": "session", "pool_size": 20}],
        "routing": {"read_write_split": True, "failover_timeout": 60},
        "health_check": {"period": 1, "timeout": 2, "max_retries": 2, "user": "postgres", "database": "postgres"},
        "switchover": {"drain_timeout": 10, "command_timeout": 60},
        "topology": {"source": "patroni", "poll_interval": POLL, "timeout": 2,
                     "patroni_urls": [f"http://127.0.0.1:{BASE + 10}", f"http://127.0.0.1:{BASE + 11}"],
                     # patroni_cluster.sh: etcd's client port and Patroni's scope
                     "etcd_urls": [f"http://127.0.0.1:{BASE + 20}"], "patroni_scope": "pgmux-test"},
        "admin_users": ["admin"],
        "metrics_listen": f"127.0.0.1:{port + 1}",
    }
    if patroni_credentials:  # Patroni's restapi.authentication (patroni_cluster.sh): POST /switchover needs it
        c["topology"].update({"patroni_username": "patroni", "patroni_password": "patroni"})
    return c


def start_pgmux(binary, work, name, port, pool_mode, patroni_credentials=True):
    path = os.path.join(work, f"pgmux-{name}.json")
    with open(path, "w") as f:
        json.dump(config(port, pool_mode, patroni_credentials), f)
    log = open(os.path.join(work, f"pgmux-{name}.log"), "w")
    proc = subprocess.Popen([binary, "-c", path], stdout=log, stderr=subprocess.STDOUT)
    wait_for(f"pgmux {name} listening", lambda: ready(port), 15)
    return proc


def ready(port):
    try:
        connect(port, user="admin", dbname="pgmux").close()
        return True
    except psycopg.Error:
        return False


def pgbench(port, seconds, clients=16, dbname="app"):
    env = dict(os.environ, PGPASSWORD="app")
    return subprocess.Popen([f"{PGBIN}/pgbench", "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-h",
                             "127.0.0.1", "-p", str(port), "-U", "app", dbname],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def pgbench_result(proc, label):
    out, _ = proc.communicate(timeout=120)
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    aborted = len(re.findall(r"client \d+ (?:script \d+ )?aborted", out))
    print(f"      {label}: processed {processed and processed.group(1)}, failed {failed and failed.group(1)}, "
          f"aborted clients {aborted}", flush=True)
    return out, int(processed.group(1)) if processed else 0, int(failed.group(1)) if failed else -1, aborted


def balances_consistent(port):
    with connect(port, user="postgres", dbname="app") as c:
        a, t, b, h = c.execute("SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                               "(SELECT sum(tbalance) FROM pgbench_tellers), "
                               "(SELECT sum(bbalance) FROM pgbench_branches), "
                               "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)").fetchone()
    print(f"      balances: accounts {a} tellers {t} branches {b} history {h}", flush=True)
    return a == t == b == h


def in_recovery(port):
    try:
        with connect(port, user="postgres", dbname="postgres") as c:
            return c.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    except psycopg.Error:
        return None


class StaleReadWatch:
    """A writer and a reader through `port` while something happens. The writer inserts into marks on one
    connection; the reader asks for max(id) on a new connection each time, a read pgmux sends to a standby. A read
    that misses a row acknowledged before it was sent is stale: causal consistency (pgmux's default) promises
    none, as a direct connection to the primary gives none."""

    def __init__(self, port):
        self.port, self.lock, self.done = port, threading.Lock(), threading.Event()
        self.acked, self.writes, self.reads = 0, 0, 0
        self.stale, self.write_errors, self.read_errors = [], [], []
        self.threads = [threading.Thread(target=self._write), threading.Thread(target=self._read)]
        for t in self.threads:
            t.start()

    def _write(self):
        conn = None
        while not self.done.is_set():
            try:
                conn = conn or connect(self.port)
                row_id = conn.execute("INSERT INTO marks (at) VALUES (now()) RETURNING id").fetchone()[0]
                with self.lock:
                    self.acked, self.writes = max(self.acked, row_id), self.writes + 1
            except psycopg.Error as e:
                self.write_errors.append(str(e).strip())
                conn = None
                time.sleep(0.1)
            time.sleep(0.01)

    def _read(self):
        while not self.done.is_set():
            with self.lock:
                expected = self.acked
            try:
                with connect(self.port) as c:
                    got = c.execute("SELECT coalesce(max(id), 0), inet_server_port() FROM marks").fetchone()
                self.reads += 1
                if got[0] < expected:
                    self.stale.append(f"max(id) {got[0]} < {expected} on port {got[1]}")
            except psycopg.Error as e:
                self.read_errors.append(str(e).strip())
                time.sleep(0.1)
            time.sleep(0.02)

    def finish(self, label):
        self.done.set()
        for t in self.threads:
            t.join(timeout=30)
        print(f"      {label}: {self.writes} writes ({len(self.write_errors)} failed), {self.reads} reads "
              f"({len(self.read_errors)} failed), {len(self.stale)} stale", flush=True)
        for e in (self.write_errors + self.read_errors + self.stale)[:5]:
            print(f"        {e}", flush=True)
        check(self.writes > 0 and self.reads > 0 and not self.stale,
              f"{label}: no read missed a write acknowledged before it")
        check(not self.write_errors, f"{label}: no write between transactions failed")


def act1():
    print("act 1: both pgmux instances follow Patroni's leader", flush=True)
    for label, port in (("A", PORT_A), ("B", PORT_B)):
        wait_for(f"{label} sees node1 as the primary", lambda: backends(port)["node1"]["role"] == "primary", 15)
        check(write_port(port) == NODE_PORT["node1"], f"a write through {label} lands on node1")
        roles = backends(port)
        check(roles["node1"]["patroni_role"] == "leader" and roles["node2"]["patroni_role"] == "replica",
              f"{label}'s SHOW BACKENDS shows Patroni's roles")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/metrics", timeout=5).read().decode()
        check("pgmux_patroni_up 1" in metrics and
              'pgmux_backend_patroni_role{backend="node1",role="leader"} 1' in metrics,
              f"{label}'s metrics: Patroni answers, node1 is its leader")


def act2():
    print("act 2: SWITCHOVER TO node2 on A's console, pgbench through A in both pool modes", flush=True)
    bench_tx, bench_session = pgbench(PORT_A, 8), pgbench(PORT_A, 8, clients=8, dbname="app_session")
    # B's sessions are not drained by A's switchover (see README, Patroni): one idle across it must go on there.
    idle_b = connect(PORT_B)
    idle_b.execute("INSERT INTO marks (at) VALUES (now())")
    watch = StaleReadWatch(PORT_A)
    time.sleep(2)
    with connect(PORT_A, user="admin", dbname="pgmux") as c:
        notices = []
        c.add_notice_handler(lambda d: notices.append(d.message_primary))
        try:
            c.execute("SWITCHOVER TO node2")
            check(True, "SWITCHOVER TO node2 succeeded")
        except psycopg.Error as e:
            check(False, f"SWITCHOVER TO node2 succeeded (got: {str(e).strip()})")
        for n in notices:
            print(f"      NOTICE: {n}", flush=True)
        check(any(n.startswith("Patroni: ") for n in notices), "Patroni did the switchover (its answer is a notice)")
    for label, proc in (("A, transaction pooling", bench_tx), ("A, session pooling", bench_session)):
        out, processed, failed, aborted = pgbench_result(proc, label)
        check(processed > 0 and failed == 0 and aborted == 0 and proc.returncode == 0,
              f"pgbench through {label}: no failed transaction, no aborted client")
        if failed or aborted:
            print(out[-3000:], flush=True)
    watch.finish("reads and writes through A across the switchover")
    check(balances_consistent(NODE_PORT["node2"]), "balances are consistent on node2")
    wait_for("B sees node2 as the primary", lambda: backends(PORT_B)["node2"]["role"] == "primary", 5)
    idle_session_writes_on(idle_b, "node2", "B's session idle across it")
    for label, port in (("A", PORT_A), ("B", PORT_B)):
        check(write_port(port) == NODE_PORT["node2"], f"a write through {label} lands on node2")
    wait_for("node1 rejoins as a standby", lambda: in_recovery(NODE_PORT["node1"]) is True, 60)
    wait_for("B sees node1 streaming as a standby",
             lambda: backends(PORT_B)["node1"]["role"] == "standby" and backends(PORT_B)["node1"]["sync_state"], 20)
    # In the read set, too: a target excluded for lag (past max_lag_bytes, then lag_hysteresis) is refused by pgmux
    # before Patroni is asked (seen under ASan and TSan, where pgbench's WAL takes longer to replay).
    wait_for("node1 in B's read set", lambda: not backends(PORT_B)["node1"]["excluded_reason"], 40)
    with connect(PORT_B, user="admin", dbname="pgmux") as c:
        try:
            c.execute("SWITCHOVER TO node1")
            check(False, "B's SWITCHOVER without Patroni credentials is refused")
        except psycopg.Error as e:
            check(e.sqlstate == "55000" and "HTTP 401" in str(e),
                  f"B's SWITCHOVER without Patroni credentials is canceled on Patroni's 401 (got: {str(e).strip()})")
    check(write_port(PORT_B) == NODE_PORT["node2"], "after the canceled SWITCHOVER, writes through B resume on node2")


def patroni_switchovers(port, result):
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/metrics", timeout=5).read().decode()
    found = re.search(r'pgmux_patroni_switchovers_total\{result="%s"\} (\d+)' % result, metrics)
    return int(found.group(1)) if found else -1


def put_failover_key(value):
    """Writes Patroni's failover key in etcd (its v3 JSON gateway), as patronictl's POST /switchover makes Patroni
    do."""
    b64 = lambda text: base64.b64encode(text.encode()).decode()
    body = json.dumps({"key": b64("/service/pgmux-test/failover"), "value": b64(json.dumps(value))}).encode()
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{BASE + 20}/v3/kv/put", data=body),
                           timeout=5).read()


def benches_came_through(benches, switchover, new_leader, old_leader):
    """No pgbench client saw an error across `switchover`; the data is whole; the old leader streams again."""
    for label, proc in benches:
        out, processed, failed, aborted = pgbench_result(proc, f"{label} during {switchover}")
        check(processed > 0 and failed == 0 and aborted == 0 and proc.returncode == 0,
              f"pgbench through {label} across {switchover}: no failed transaction, no aborted client")
        if failed or aborted:
            print(out[-3000:], flush=True)
    check(balances_consistent(NODE_PORT[new_leader]), f"balances are consistent on {new_leader}")
    wait_for(f"{old_leader} rejoins as a standby", lambda: in_recovery(NODE_PORT[old_leader]) is True, 60)


def act3(work):
    print("act 3: a switchover asked of Patroni directly, seen in etcd", flush=True)
    for name, port in (("A", PORT_A), ("B", PORT_B)):
        with open(os.path.join(work, f"pgmux-{name}.log")) as f:
            log = f.read()
        check("watching Patroni's failover key /service/pgmux-test/failover" in log and "has no key" not in log,
              f"{name} watches the failover key, and finds Patroni's leader key beside it")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/metrics", timeout=5).read().decode()
        check("\npgmux_etcd_watch_up 1\n" in metrics, f"{name}'s metrics: the watch is up")
    # B drained for act 2's switchover too (A asked Patroni for it): counts from here.
    done_before = {port: patroni_switchovers(port, "done") for port in (PORT_A, PORT_B)}
    check(done_before[PORT_B] == 1, f"B drained for A's SWITCHOVER through Patroni (done: {done_before[PORT_B]})")
    # Patroni refuses a candidate it does not have and clears the key: both pgmux drain, then resume on node2.
    put_failover_key({"leader": "node2", "member": "nosuch"})
    for label, port in (("A", PORT_A), ("B", PORT_B)):
        wait_for(f"{label} cancels its drain once Patroni clears a request it refused",
                 lambda: patroni_switchovers(port, "canceled") == 1, 15)
        check(write_port(port) == NODE_PORT["node2"], f"after the refused request, a write through {label} lands "
                                                      "on node2")
    print("      patronictl switchover back to node1, behind pgmux's back", flush=True)
    idle = connect(PORT_B)  # session pooling: keeps its client connection across the switchover
    idle.execute("INSERT INTO marks (at) VALUES (now())")
    benches = (("A, transaction pooling", pgbench(PORT_A, 8)),
               ("A, session pooling", pgbench(PORT_A, 8, clients=8, dbname="app_session")),
               ("B, session pooling", pgbench(PORT_B, 8, clients=4)))
    time.sleep(2)
    r = run("patronictl", "-c", os.path.join(work, "cluster", "node1.yml"), "switchover", "--leader", "node2",
            "--candidate", "node1", "--force", timeout=90)
    check(r.returncode == 0, "patronictl switchover to node1")
    if r.returncode != 0:
        print(r.stdout + r.stderr, flush=True)
    for label, port in (("A", PORT_A), ("B", PORT_B)):
        wait_for(f"{label} sees node1 as the primary", lambda: backends(port)["node1"]["role"] == "primary", 10)
        check(write_port(port) == NODE_PORT["node1"], f"a write through {label} lands on node1")
        wait_for(f"{label} counts the Patroni switchover it drained for as done",
                 lambda: patroni_switchovers(port, "done") == done_before[port] + 1, 10)
    idle_session_writes_on(idle, "node1", "the session idle across it")
    # Drained before Patroni's fast shutdown: nothing ran on node2 when it stopped (without etcd_urls, the
    # transactions running there end with 57P01).
    benches_came_through(benches, "patronictl switchover", new_leader="node1", old_leader="node2")


def held_at(log, text):
    """The time of the first log line containing `text` (pgmux logs local time), or None."""
    for line in log.splitlines():
        if text in line:
            return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").astimezone(datetime.timezone.utc)
    return None


def act3_scheduled(work):
    print("      patronictl switchover to node2, scheduled 6 s ahead", flush=True)
    done_before = {port: patroni_switchovers(port, "done") for port in (PORT_A, PORT_B)}
    benches = (("A, transaction pooling", pgbench(PORT_A, 14)), ("B, session pooling", pgbench(PORT_B, 14, clients=4)))
    time.sleep(1)
    # Ahead far enough for patronictl to start on a loaded machine: Patroni refuses a time in the past.
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=6)
    r = run("patronictl", "-c", os.path.join(work, "cluster", "node1.yml"), "switchover", "--leader", "node1",
            "--candidate", "node2", "--scheduled", at.isoformat(), "--force", timeout=60)
    check(r.returncode == 0, "patronictl switchover --scheduled to node2")
    if r.returncode != 0:
        print(r.stdout + r.stderr, flush=True)
    for label, port in (("A", PORT_A), ("B", PORT_B)):
        wait_for(f"{label} sees node2 as the primary", lambda: backends(port)["node2"]["role"] == "primary", 20)
        wait_for(f"{label} counts the scheduled Patroni switchover it drained for as done",
                 lambda: patroni_switchovers(port, "done") == done_before[port] + 1, 10)
        with open(os.path.join(work, f"pgmux-{label}.log")) as f:
            log = f.read()
        check("Patroni has a switchover from node1 to node2 scheduled at" in log,
              f"{label} logs the scheduled switchover when Patroni is asked for it")
        held = held_at(log, "to node2 (its failover key, scheduled at")
        check(held is not None and at - datetime.timedelta(seconds=1.5) < held < at - datetime.timedelta(seconds=0.5),
              f"{label} holds writes a second before the scheduled time ({held} for {at})")
    benches_came_through(benches, "a scheduled patronictl switchover", new_leader="node2", old_leader="node1")


def act4(work):
    print("act 4: the leader's Patroni daemon is killed; its PostgreSQL stays up as a primary", flush=True)
    # node2 after act 3 (found, not assumed: a failure there should not make this act kill the wrong daemon)
    old, new = ("node2", "node1") if in_recovery(NODE_PORT["node2"]) is False else ("node1", "node2")
    with open(os.path.join(work, "cluster", f"{old}.pid")) as f:
        os.kill(int(f.read().strip()), signal.SIGKILL)  # started by patroni_cluster.sh for this test
    check(in_recovery(NODE_PORT[old]) is False, f"{old} still runs as a primary without its Patroni")
    promoted_at = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and promoted_at is None:  # Patroni's ttl is 20 s
        if in_recovery(NODE_PORT[new]) is False:
            promoted_at = time.monotonic()
        time.sleep(0.05)
    check(promoted_at is not None, f"Patroni promoted {new} once {old}'s leader key expired")
    if promoted_at is None:
        return
    for label, port in (("A", PORT_A), ("B", PORT_B)):
        landed, on_old = None, 0
        while time.monotonic() < promoted_at + 10:
            landed = write_port(port)
            if landed == NODE_PORT[new]:
                break
            if landed == NODE_PORT[old]:
                # Until pgmux's next poll sees the new leader, the old primary still looks like Patroni's leader:
                # such writes are on a timeline Patroni abandoned (README: the poll interval is the window).
                on_old += 1
                check(time.monotonic() < promoted_at + POLL + 1.5,
                      f"no write through {label} lands on {old} later than a poll after Patroni promoted {new}")
            time.sleep(0.05)
        gap = time.monotonic() - promoted_at
        print(f"      {label}: first write on {new} {gap:.2f} s after it left recovery; {on_old} write(s) on {old} "
              "before that", flush=True)
        check(landed == NODE_PORT[new] and gap < POLL + 3, f"{label} followed within a poll (and a probe round)")
        roles = backends(port)
        check(roles[old]["role"] == "fenced", f"{label} fences {old} ({roles[old]['excluded_reason']})")
    check(in_recovery(NODE_PORT[old]) is False, f"{old} still accepts writes directly: only pgmux keeps it out")
    landed = [write_port(port) for port in (PORT_A, PORT_B) for _ in range(10)]
    check(all(p == NODE_PORT[new] for p in landed), f"20 more writes all land on {new} (got {set(landed)})")


def main():
    binary = os.environ.get("PGMUX_BINARY") or sys.argv[1]
    support = sys.argv[2]
    script = os.path.join(support, "patroni_cluster.sh")
    if run("bash", script, "available").returncode != 0:
        print("SKIP: patroni or etcd is not installed (scripts/install-deps.sh installs patroni and etcd-server)")
        return 77
    work = tempfile.mkdtemp(prefix="pgmux-it-patroni-", dir=os.environ.get("PGMUX_TEST_TMPDIR"))
    os.chmod(work, 0o755)
    cluster = os.path.join(work, "cluster")
    procs = []
    try:
        r = run("bash", script, "start", cluster, str(BASE), timeout=180)
        if r.returncode != 0:
            print(r.stdout + r.stderr)
            check(False, "the Patroni cluster starts")
            return 1
        with connect(NODE_PORT["node1"], user="postgres", dbname="app") as c:
            c.execute("CREATE TABLE marks (id bigserial PRIMARY KEY, at timestamptz)")
            c.execute("GRANT ALL ON marks, marks_id_seq TO app")
        env = dict(os.environ, PGPASSWORD="app")
        run(f"{PGBIN}/pgbench", "-i", "-s", "2", "-q", "-h", "127.0.0.1", "-p", str(NODE_PORT["node1"]), "-U", "app",
            "app", env=env)
        procs.append(start_pgmux(binary, work, "A", PORT_A, "transaction"))
        # B has no Patroni credentials: its SWITCHOVER must be refused by Patroni (act 2).
        procs.append(start_pgmux(binary, work, "B", PORT_B, "session", patroni_credentials=False))
        act1()
        act2()
        act3(work)
        act3_scheduled(work)
        act4(work)
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        run("bash", script, "stop", cluster, timeout=120)
        if failures or os.environ.get("PGMUX_TEST_KEEP_LOGS"):
            for name in ("A", "B"):
                path = os.path.join(work, f"pgmux-{name}.log")
                if os.path.exists(path):
                    print(f"---- pgmux {name} log (last 60 lines) ----")
                    print("".join(open(path).readlines()[-60:]))
        if not os.environ.get("PGMUX_TEST_KEEP_LOGS"):
            shutil.rmtree(work, ignore_errors=True)
    print(f"{len(failures)} failure(s)" if failures else "all checks passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
