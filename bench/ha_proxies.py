"""The two proxies bench/ha_compare.py puts in front of its cluster, configured alike where they have the same
knobs: health checks every 1 s with 2 retries, reads split to the standbys, 16 MiB of lag allowed."""
import json
import os
import signal
import subprocess
import time

import psycopg


def _connect(port, user, dbname):
    return psycopg.connect(host="127.0.0.1", port=port, user=user, password=user, dbname=dbname, connect_timeout=3,
                           autocommit=True)


class _Process:
    """A proxy process started here, stopped by its pid."""

    def __init__(self, args, log_path, port, standby_ports):
        self.port = port
        self.standby_ports = standby_ports
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_serving_reads(self, timeout=60):
        """Until a read through the proxy lands on a standby (its probes or sr_check found them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited ({self.proc.returncode}); log: {self.log_path}")
            try:
                with _connect(self.port, "app", "app") as c:
                    if c.execute("SELECT inet_server_port()").fetchone()[0] in self.standby_ports:
                        return
            except psycopg.Error:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"no read through port {self.port} reached a standby in {timeout} s; log: {self.log_path}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own process group: pgpool's children too
                self.proc.wait()
        self.log.close()


class PgmuxProxy(_Process):
    def __init__(self, binary, work, port, cluster, pool_mode, failover_mode, cluster_sh):
        config = {
            "listeners": [{"host": "127.0.0.1", "port": port}],
            "workers": 2,
            "backends": [{"name": n, "host": "127.0.0.1", "port": p} for n, p in cluster.ports.items()],
            "users": [{"name": "app", "password": "app"}, {"name": "postgres", "password": "postgres"},
                      {"name": "admin", "password": "admin"}],
            "databases": [{"name": "app", "pool_mode": pool_mode, "pool_size": 20}],
            "routing": {"read_write_split": True, "failover_timeout": 30, "max_lag_bytes": 16 << 20},
            "health_check": {"period": 1, "timeout": 2, "max_retries": 2, "user": "postgres"},
            "failover": {"mode": failover_mode},
            "admin_users": ["admin"],
            "logging": {"level": os.environ.get("PGMUX_HA_LOG_LEVEL", "info")},
        }
        if hasattr(cluster, "rest_urls"):  # Patroni decides the primary; SWITCHOVER goes through its REST API
            config["topology"] = {"source": "patroni", "patroni_urls": cluster.rest_urls, "poll_interval": 0.5,
                                  "patroni_username": "patroni", "patroni_password": "patroni",
                                  # a switchover asked of Patroni directly is drained for (its failover key)
                                  "etcd_urls": cluster.etcd_urls, "patroni_scope": cluster.scope}
        else:
            sh = f"bash {cluster_sh} "
            config["switchover"] = {"demote_command": sh + f"rejoin {cluster.dir} %n %N",
                                    "follow_primary_command": sh + f"follow {cluster.dir} %n %N"}
        path = os.path.join(work, "pgmux.json")
        with open(path, "w") as f:
            json.dump(config, f)
        super().__init__([binary, "-c", path], os.path.join(work, "pgmux.log"), port, cluster.standby_ports())

    def switchover(self, target):
        with _connect(self.port, "admin", "pgmux") as c:
            c.execute(f"SWITCHOVER TO {target}")

    def sample_pools(self):
        """SHOW POOLS, appended with the time to pools.log next to pgmux.log."""
        try:
            with _connect(self.port, "admin", "pgmux") as c:
                cur = c.execute("SHOW POOLS")
                names = [d.name for d in cur.description]
                rows = cur.fetchall()
        except psycopg.Error as e:
            rows, names = [], [f"error: {e}"]
        with open(os.path.join(os.path.dirname(self.log_path), "pools.log"), "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {' '.join(names)}\n")
            f.writelines("  " + " ".join(str(v) for v in r) + "\n" for r in rows)


class PgpoolProxy(_Process):
    """Pgpool-II in streaming-replication mode. Its failover_command promotes the new main node when the primary
    fails (standby1: the next node); nothing repoints standby2 (no follow_primary_command), as in pgmux's
    external scenarios. Clients authenticate in clear text to Pgpool, which uses that password towards the
    backends' SCRAM (allow_clear_text_frontend_auth): no pool_passwd to keep."""

    def __init__(self, binary, work, port, cluster):
        script = os.path.join(work, "failover.sh")
        with open(script, "w") as f:
            # failed node, its old primary id, new main node's data directory
            f.write('#!/bin/bash\n[ "$1" = "$2" ] || exit 0\n'
                    f'exec runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl promote -D "$3"\n')
        lines = {
            "backend_clustering_mode": "'streaming_replication'",
            "listen_addresses": "'127.0.0.1'", "port": port,
            "unix_socket_directories": f"'{work}'", "pcp_listen_addresses": "'127.0.0.1'", "pcp_port": port + 1,
            "pcp_socket_dir": f"'{work}'", "pid_file_name": f"'{work}/pgpool.pid'", "logdir": f"'{work}'",
            "num_init_children": 32, "max_pool": 4,
            "enable_pool_hba": "off", "allow_clear_text_frontend_auth": "on",
            "load_balance_mode": "on", "delay_threshold": 16 << 20,
            "sr_check_period": 1, "sr_check_user": "'postgres'", "sr_check_password": "'postgres'",
            "sr_check_database": "'postgres'",
            "health_check_period": 1, "health_check_timeout": 2, "health_check_max_retries": 2,
            "health_check_retry_delay": 1, "health_check_user": "'postgres'", "health_check_password": "'postgres'",
            "failover_command": f"'bash {script} %d %P %R'", "failover_on_backend_error": "on",
            "search_primary_node_timeout": 30,
        }
        for i, (node, p) in enumerate(cluster.ports.items()):
            lines.update({f"backend_hostname{i}": "'127.0.0.1'", f"backend_port{i}": p, f"backend_weight{i}": 1,
                          f"backend_data_directory{i}": f"'{cluster.data(node)}'",
                          f"backend_flag{i}": "'ALLOW_TO_FAILOVER'", f"backend_application_name{i}": f"'{node}'"})
        conf = os.path.join(work, "pgpool.conf")
        with open(conf, "w") as f:
            f.writelines(f"{k} = {v}\n" for k, v in lines.items())
        pcp = os.path.join(work, "pcp.conf")
        open(pcp, "w").close()
        hba = os.path.join(work, "pool_hba.conf")
        open(hba, "w").close()
        # -n: foreground; -D: forget node states from an earlier run (pgpool_status).
        super().__init__([binary, "-n", "-D", "-f", conf, "-F", pcp, "-a", hba], os.path.join(work, "pgpool.log"),
                         port, cluster.standby_ports())

    def switchover(self, target):
        raise NotImplementedError("Pgpool-II has no planned switchover of its own")
