"""The clusters bench/ha_compare.py runs its scenarios on, each in a directory of its own on 127.0.0.1:
tests/support/cluster.sh's primary with two streaming standbys (standby1 synchronous), or
tests/support/patroni_cluster.sh's Patroni pair with etcd."""
import os
import subprocess
import time

import psycopg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_SH = os.path.join(REPO, "tests", "support", "cluster.sh")
PATRONI_SH = os.path.join(REPO, "tests", "support", "patroni_cluster.sh")
PGBIN = "/usr/lib/postgresql/15/bin"
NODES = ("primary", "standby1", "standby2")


def as_postgres(*args):
    cmd = list(args)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def connect(port, user="app", dbname="app", timeout=3):
    return psycopg.connect(host="127.0.0.1", port=port, user=user, password=user, dbname=dbname,
                           connect_timeout=timeout, autocommit=True)


class Cluster:
    """tests/support/cluster.sh's cluster in a directory of its own, with standby1 as the synchronous standby."""

    def __init__(self, work, base):
        self.dir = os.path.join(work, "cluster")
        self.ports = {n: base + i for i, n in enumerate(NODES)}
        r = subprocess.run(["bash", CLUSTER_SH, "start", self.dir, str(base)], capture_output=True, text=True,
                           timeout=300)
        if r.returncode != 0:
            raise RuntimeError("cluster.sh start failed:\n" + r.stdout + r.stderr)
        with connect(self.ports["primary"], "postgres", "postgres") as c:
            c.execute("ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (standby1)'")
            c.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
            c.execute("SELECT pg_reload_conf()")
        create_log_table(self.ports["primary"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.replayed():
            time.sleep(0.1)

    def replayed(self):
        try:
            with connect(self.ports["primary"], "postgres", "postgres") as c:
                n = c.execute("SELECT count(*) FROM pg_stat_replication WHERE replay_lsn = pg_current_wal_lsn() "
                              "AND sync_state IN ('sync', 'async')").fetchone()[0]
                sync = c.execute("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'").fetchone()[0]
            return n == 2 and sync == 1
        except psycopg.Error:
            return False

    def data(self, node):
        return os.path.join(self.dir, node)

    def kill(self, node):
        as_postgres(f"{PGBIN}/pg_ctl", "stop", "-m", "immediate", "-D", self.data(node))

    def promote(self, node):
        as_postgres(f"{PGBIN}/pg_ctl", "promote", "-D", self.data(node))

    def primaries(self):
        return primaries_of(self.ports)

    def standby_ports(self):
        return [self.ports["standby1"], self.ports["standby2"]]

    def stop(self):
        subprocess.run(["bash", CLUSTER_SH, "stop", self.dir], capture_output=True, timeout=300)


def create_log_table(port):
    with connect(port, "postgres", "app") as c:
        c.execute("CREATE TABLE ha_log (writer int, seq int, PRIMARY KEY (writer, seq))")
        c.execute("ALTER TABLE ha_log OWNER TO app")
        c.execute("INSERT INTO ha_log VALUES (0, 0)")  # readers' max(seq) is never null


class PatroniCluster:
    """Two Patroni members (node1 the leader at the start, node2 its replica; asynchronous replication) and etcd."""

    def __init__(self, work, base):
        self.dir = os.path.join(work, "cluster")
        self.ports = {"node1": base, "node2": base + 1}
        self.rest_urls = [f"http://127.0.0.1:{base + 10}", f"http://127.0.0.1:{base + 11}"]
        self.etcd_urls = [f"http://127.0.0.1:{base + 20}"]  # patroni_cluster.sh's etcd; Patroni's scope:
        self.scope = "pgmux-test"
        r = subprocess.run(["bash", PATRONI_SH, "start", self.dir, str(base)], capture_output=True, text=True,
                           timeout=300)
        if r.returncode != 0:
            raise RuntimeError("patroni_cluster.sh start failed:\n" + r.stdout + r.stderr)
        create_log_table(self.ports["node1"])

    def standby_ports(self):
        return [self.ports["node2"]]

    def patronictl_switchover(self, leader, candidate):
        r = subprocess.run(["patronictl", "-c", os.path.join(self.dir, "node1.yml"), "switchover", "--leader", leader,
                            "--candidate", candidate, "--force"], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("patronictl switchover failed: " + r.stdout + r.stderr)

    def primaries(self):
        return primaries_of(self.ports)

    def stop(self):
        subprocess.run(["bash", PATRONI_SH, "stop", self.dir], capture_output=True, timeout=300)


def primaries_of(ports):
    found = []
    for node, port in ports.items():
        try:
            with connect(port, "postgres", "postgres", timeout=2) as c:
                if not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    found.append(node)
        except psycopg.Error:
            pass
    return found
