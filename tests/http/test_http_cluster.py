"""The sidecar in cluster mode: 3 real nodes on 127.0.0.2-4, each with its sidecar.

Writes and reads go to the leader (reads linearizable, through a ReadIndex
round, as on RESP); a follower answers 503 with the MOVED text naming the
leader; /api/v1/cluster/info shows the group as every node sees it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sidecar_client import HttpClient, health_answers

from nomadkv.harness import LocalCluster, ServerProcess, free_port, wait_until


class SidecarCluster:
    def __init__(self, base_dir: str) -> None:
        hosts = [f"127.0.0.{2 + i}" for i in range(3)]
        self.http_ports = [free_port(host) for host in hosts]
        self.cluster = LocalCluster(
            base_dir, node_options=[{"http_port": port} for port in self.http_ports]
        )

    def http(self, node: ServerProcess) -> HttpClient:
        return HttpClient(node.host, self.http_ports[self.cluster.nodes.index(node)])


@pytest.fixture(scope="module")
def sidecars(tmp_path_factory) -> Iterator[SidecarCluster]:
    c = SidecarCluster(str(tmp_path_factory.mktemp("cluster")))
    try:
        c.cluster.start()
        for node in c.cluster.nodes:
            port = c.http_ports[c.cluster.nodes.index(node)]
            wait_until(lambda n=node, p=port: health_answers(n.host, p), 30, "the sidecars")
        yield c
    finally:
        c.cluster.stop()


def test_the_leader_serves_http_reads_and_writes(sidecars: SidecarCluster) -> None:
    leader = sidecars.cluster.leader()
    api = sidecars.http(leader)
    assert api.set("c-key", "v", ttl=600).status == 200
    body = api.get("/api/v1/get/c-key").json()
    assert (body["value"], body["ttl"]) == ("v", 600)
    assert leader.client().get("c-key") == b"v"
    for node in sidecars.cluster.nodes:
        replica = node.client()
        replica.execute_command("READONLY")
        wait_until(lambda r=replica: r.get("c-key") == b"v", 10, "every replica to apply it")
    assert api.delete("/api/v1/delete/c-key").status == 200
    assert api.get("/api/v1/get/c-key").status == 404


def test_followers_answer_503_naming_the_leader(sidecars: SidecarCluster) -> None:
    leader = sidecars.cluster.leader()
    moved = f"{leader.host}:{leader.port}"
    for node in sidecars.cluster.nodes:
        if node is leader:
            continue
        api = sidecars.http(node)
        for answer in (
            api.set("f-key", "v"),
            api.get("/api/v1/get/f-key"),
            api.delete("/api/v1/delete/f-key"),
        ):
            assert answer.status == 503
            assert answer.json()["error"].startswith("MOVED ")
            assert answer.json()["error"].endswith(moved)
    assert leader.client().exists("f-key") == 0


def test_every_node_describes_the_same_group(sidecars: SidecarCluster) -> None:
    leader = sidecars.cluster.leader()

    def views() -> list[dict]:
        return [
            sidecars.http(node).get("/api/v1/cluster/info").json()
            for node in sidecars.cluster.nodes
        ]

    def agreed() -> bool:
        groups = [view["shard_groups"][0] for view in views()]
        return all(g["leader"] == groups[0]["leader"] is not None for g in groups)

    wait_until(agreed, 10, "every node to know the leader")
    infos = views()
    ids = [info["node"]["id"] for info in infos]
    assert len(set(ids)) == 3
    for node, info in zip(sidecars.cluster.nodes, infos, strict=True):
        assert info["cluster_enabled"] is True
        assert info["state"] == "ok"
        assert info["node"]["address"] == f"{node.host}:{node.port}"
        assert info["node"]["role"] == ("leader" if node is leader else "follower")
        assert sorted(m["id"] for m in info["members"]) == sorted(ids)
        (leading,) = [m for m in info["members"] if m["role"] == "leader"]
        assert leading["address"] == f"{leader.host}:{leader.port}"
        (group,) = info["shard_groups"]
        assert group["leader"] == leading["id"]
        assert group["slots"] == [[0, 16383]]
        assert group["term"] >= 1
