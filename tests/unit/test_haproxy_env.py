"""The HAProxy ingress environment each embedded cluster gets: its own files and ports, so that
several clusters on one machine never share a replica port (replicas bind with SO_REUSEPORT, and
a shared port would split one server's requests between two clusters)."""

import os

from serve_apps.embedded.local_cluster import INGRESS_ENV, REPLICA_PORTS, cluster_env, haproxy_env


def _ports(env: dict, kind: str) -> set[int]:
    return set(range(int(env[f"RAY_SERVE_DIRECT_INGRESS_MIN_{kind}_PORT"]),
                     int(env[f"RAY_SERVE_DIRECT_INGRESS_MAX_{kind}_PORT"]) + 1))


def test_two_clusters_get_disjoint_ports_and_their_own_files(tmp_path):
    a, b = haproxy_env(str(tmp_path / "a")), haproxy_env(str(tmp_path / "b"))
    for env, name in ((a, "a"), (b, "b")):
        assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
        assert len(_ports(env, "HTTP")) == len(_ports(env, "GRPC")) == REPLICA_PORTS
        for key in ("CONFIG_FILE_LOC", "SOCKET_PATH", "SERVER_STATE_FILE"):
            assert env[f"RAY_SERVE_HAPROXY_{key}"].startswith(str(tmp_path / name))
    every = [_ports(a, "HTTP"), _ports(a, "GRPC"), _ports(b, "HTTP"), _ports(b, "GRPC"),
             {int(a["RAY_SERVE_HAPROXY_STATS_PORT"]), int(a["RAY_SERVE_HAPROXY_METRICS_PORT"])},
             {int(b["RAY_SERVE_HAPROXY_STATS_PORT"]), int(b["RAY_SERVE_HAPROXY_METRICS_PORT"])}]
    assert sum(map(len, every)) == len(set().union(*every))


def test_only_asked_for_and_the_operators_own_settings_win(tmp_path, monkeypatch):
    monkeypatch.delenv(INGRESS_ENV, raising=False)
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in cluster_env("http://127.0.0.1:1", str(tmp_path))
    monkeypatch.setenv(INGRESS_ENV, "haproxy")
    monkeypatch.setenv("RAY_SERVE_HAPROXY_STATS_PORT", "18404")
    env = cluster_env("http://127.0.0.1:1", str(tmp_path))
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and env["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"
    assert os.path.isdir(tmp_path / "haproxy")
