"""An embedded single-node Ray cluster started with `ray start --head --block` as a child process.

Every port is chosen free and explicit and the cluster has its own temp dir, so several servers
(and test clusters) can run on one machine: with `ray.init(address="local")` every instance would
share the default dashboard-agent port, and Ray Jobs (which the job manager submits fine-tunes
through) would land on whichever instance owns it. `ray start` also writes the cluster's address
into its temp dir, which is how a job's driver finds its cluster.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from train_jobs.report_pacing import POLL_INTERVAL_ENV

RAY = str(Path(sys.executable).with_name("ray"))
NODE_PORT_FLAGS = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                   "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")


def _ephemeral_range() -> tuple[int, int]:
    """The range the OS draws ports from for `bind(0)` and outgoing connections."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32_768, 60_999


_GIVEN_PORTS: set[int] = set()  # single ports this process handed out (they may not be bound yet)


def free_ports(n: int) -> list[int]:
    """`n` distinct ports that are free now, drawn at random above the OS's ephemeral range: a port
    picked inside it is only free until whoever binds it binds it, and servers bind theirs a minute
    later, after Ray starts, by when any `bind(0)` or outgoing connection on the machine may have
    taken it (CI saw a Serve proxy fail to bind that way). All are held open together while they are
    picked, and this process never hands out a port twice."""
    low = _ephemeral_range()[1] + 1
    if 65_536 - low < 1_024:  # no room above: let the OS choose, as before
        low = 0
    rng, sockets, ports = random.Random(), [], []
    try:
        for _ in range(50 * n):
            if len(ports) == n:
                break
            port = rng.randrange(low, 65_536) if low else 0
            if port in _GIVEN_PORTS:
                continue
            sock = socket.socket()
            try:
                sock.bind(("0.0.0.0", port))  # fails if any address holds it
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
        if len(ports) < n:
            raise RuntimeError(f"found only {len(ports)} of {n} free ports above {low}")
        _GIVEN_PORTS.update(ports)
        return ports
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def wait_until_serving(url: str, proc: subprocess.Popen, log_path: str | Path, timeout: float, what: str) -> None:
    """Polls `url` until it answers 200; raises with the log's tail if `proc` exits or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{Path(log_path).read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not start within {timeout:.0f} s:\n{Path(log_path).read_text()[-4000:]}")


def cluster_env(dashboard_url: str, temp_dir: str | None = None) -> dict:
    """Environment for `ray start`, inherited by every Ray process of the cluster. Ray Train's
    placement-group cleaner queries the state API with address "auto", which fails when several
    Ray instances run on one machine (and then a dead run's CPUs stay reserved): point it here.
    Ray Train's controller polls its workers every 0.5 s instead of 2 s (unless the variable is
    set): a finetuning job's start, progress reports and end each wait for a poll."""
    env = {POLL_INTERVAL_ENV: "0.5", **os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
           "RAY_API_SERVER_ADDRESS": dashboard_url}
    env.pop("RAY_ADDRESS", None)
    if temp_dir is not None and os.environ.get(INGRESS_ENV, "proxy") == "haproxy":
        env = {**haproxy_env(temp_dir), **env}  # what the operator set explicitly wins
    return env


INGRESS_ENV = "TSFM_SERVE_INGRESS"


def haproxy_env(temp_dir: str) -> dict:
    """Ray Serve's HAProxy ingress (Ray >= 2.55): a C load balancer in front of the ingress replicas,
    each of which serves HTTP itself, instead of the Python proxy actor (12 ms of CPU per request
    on this workload). "Throughput optimized" also runs user code on the replica's event loop and
    talks gRPC between replicas. HAProxy's files and its stats/metrics ports are global defaults,
    so each embedded cluster gets its own (several run on one machine in tests); gRPC's 4 MB
    message cap between replicas would turn a bulk request (10^4 series) into a 500."""
    stats_port, metrics_port = free_ports(2)
    # Ray's default replica port ranges are one per machine, and replicas bind them with
    # SO_REUSEPORT: two clusters on one machine would share a port and the kernel would split
    # one server's requests between both. Each cluster gets blocks of its own.
    http_ports, grpc_ports = free_port_block(REPLICA_PORTS), free_port_block(REPLICA_PORTS)
    home = os.path.join(temp_dir, "haproxy")
    os.makedirs(home, exist_ok=True)
    return {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(2**31 - 1),
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": os.path.join(home, "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": os.path.join(home, "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": home,
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": os.path.join(home, "server-state"),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port), "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(http_ports[0]),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(http_ports[-1]),
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc_ports[0]),
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc_ports[-1])}


REPLICA_PORTS = 32  # ingress replicas one node can hold in HAProxy mode


_GIVEN_BLOCKS: set[int] = set()  # block starts this process handed out (their ports may not be bound yet)


def free_port_block(n: int, low: int = 20_000, high: int = 32_768) -> list[int]:
    """`n` consecutive ports, all free now. Blocks are aligned to `n`, so two blocks either are the
    same or share no port; this process never hands out a block twice, and processes starting
    clusters together rarely draw the same one of the ~400 (a port taken anywhere in a block makes
    it draw another). Below Linux's ephemeral range (32768-), where the OS picks ports, away from
    `free_ports` (above it), and above Ray's worker ports (10002-19999)."""
    rng = random.Random()
    for _ in range(200):
        start = rng.randrange(-(-low // n), (high - n) // n) * n
        if start in _GIVEN_BLOCKS:
            continue
        sockets = []
        try:
            for port in range(start, start + n):
                sockets.append(socket.socket())
                sockets[-1].bind(("0.0.0.0", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        _GIVEN_BLOCKS.add(start)
        return list(range(start, start + n))
    raise RuntimeError(f"no {n} consecutive free ports between {low} and {high}")


# Ray starts job drivers in sessions of their own and only a watcher that polls the supervisor's
# pid would stop them; once the cluster is killed that supervisor can linger as an unreaped zombie,
# so drivers outlive it. They carry the cluster's GCS address in RAY_ADDRESS, which finds them.
DRIVER_SWEEP = ("for f in /proc/[0-9]*/environ; do "
                "tr '\\0' '\\n' 2>/dev/null < $f | grep -q '^RAY_ADDRESS=.*:{gcs_port}$' || continue; "
                "p=${{f#/proc/}}; kill -KILL ${{p%/environ}} 2>/dev/null; done")

# Watches the owner; once it is gone (even SIGKILLed, when no handler of ours can run), stops the
# cluster's process session: SIGTERM so the raylet takes its workers down, SIGKILL after 5 s, then
# the job drivers. It also exits once the session is gone, i.e. after a normal stop().
REAPER = ("while kill -0 {owner} 2>/dev/null && kill -0 -{pgid} 2>/dev/null; do sleep 1; done; "
          "kill -0 -{pgid} 2>/dev/null || exit 0; kill -TERM -{pgid} 2>/dev/null; "
          "for _ in 1 2 3 4 5; do sleep 1; kill -0 -{pgid} 2>/dev/null || break; done; "
          "kill -KILL -{pgid} 2>/dev/null; " + DRIVER_SWEEP)


def node_port_args(ports: list[int] | None = None) -> list[str]:
    ports = ports or free_ports(len(NODE_PORT_FLAGS))
    return [arg for flag, port in zip(NODE_PORT_FLAGS, ports) for arg in (flag, str(port))]


class LocalCluster:
    def __init__(self, temp_dir: str, num_cpus: int | None = None, log_path: str | None = None):
        self.temp_dir, self.num_cpus = temp_dir, num_cpus
        self.gcs_port, self.dashboard_port, self.client_port, *self.node_ports = free_ports(3 + len(NODE_PORT_FLAGS))
        self.log_path = log_path or os.path.join(temp_dir + "-start.log")
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, timeout: float = 120) -> "LocalCluster":
        return self.launch().wait_ready(timeout)

    def launch(self) -> "LocalCluster":
        """Starts `ray start` without waiting for it (the caller can do other work meanwhile)."""
        args = [RAY, "start", "--head", "--block", "--disable-usage-stats", "--temp-dir", self.temp_dir,
                "--port", str(self.gcs_port), "--dashboard-host", "127.0.0.1", "--dashboard-port",
                str(self.dashboard_port), "--include-dashboard", "true",
                "--ray-client-server-port", str(self.client_port), *node_port_args(self.node_ports)]
        if self.num_cpus is not None:
            args += ["--num-cpus", str(self.num_cpus)]
        env = cluster_env(self.dashboard_url, self.temp_dir)
        self.proc = subprocess.Popen(args, env=env, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        subprocess.Popen(["/bin/sh", "-c", REAPER.format(owner=os.getpid(), pgid=self.proc.pid, gcs_port=self.gcs_port)],
                         start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def wait_ready(self, timeout: float = 120) -> "LocalCluster":
        """Waits for the launched cluster's dashboard (its Jobs API, the last part to come up)."""
        try:
            wait_until_serving(self.dashboard_url + "/api/version", self.proc, self.log_path, timeout, "ray start")
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self, grace_s: float = 5) -> None:
        """SIGTERM lets the raylet take its workers down (within a second or two); `ray start` itself
        and the GCS linger on it for good, so whatever is left after `grace_s` is SIGKILLed. The
        embedded cluster keeps no state of its own worth a slower shutdown: jobs live in the database."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # The reaper's own sweep (it exits once the session is gone, before reaching it). No process
        # of ours can match: the port was free when this cluster started.
        subprocess.run(["/bin/sh", "-c", DRIVER_SWEEP.format(gcs_port=self.gcs_port)], check=False)
