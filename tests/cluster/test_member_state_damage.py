"""A member whose persisted Raft state is damaged refuses to start and says how
to rejoin as a new member, rather than come back as the same voter without
its vote or with a log cut short; `nomadkv repair-log` refuses to cut a
member's log for the same reason (docs/cluster.md, "A member that lost its
data"). Each case damages a stopped follower, then restores its directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from clusterkit import barrier

from nomadkv.harness import LocalCluster, ServerProcess, StartError


def data_dir(node: ServerProcess) -> str:
    return node.argv[node.argv.index("--dir") + 1]


def zero(path: str) -> None:
    with open(path, "wb"):
        pass


def flip_every_byte(path: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(bytes(b ^ 0xFF for b in data))


DAMAGE: dict[str, tuple[str, Callable[[str], None], str]] = {
    "raft-state emptied": ("raft-state", zero, "is empty, but the log is not"),
    "raft-state damaged": ("raft-state", flip_every_byte, "holds no valid hard state"),
    "identity emptied": ("identity", zero, "identity is damaged"),
    "peer identities emptied": ("peer-identities.json", zero, "peer-identities.json is damaged"),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(str(tmp_path_factory.mktemp("damage"))).start()
    client = c.leader().client()
    for i in range(50):
        client.set(f"k{i}", i)
    barrier(c.leader(), c.nodes)
    yield c
    c.stop()


@pytest.fixture
def stopped_follower(cluster: LocalCluster, tmp_path) -> Iterator[ServerProcess]:
    """A follower, stopped, whose directory is put back as it was afterwards."""
    leader = cluster.leader()
    follower = next(node for node in cluster.nodes if node is not leader)
    assert follower.stop() == 0
    backup = str(tmp_path / "backup")
    shutil.copytree(data_dir(follower), backup)
    yield follower
    shutil.rmtree(data_dir(follower))
    shutil.copytree(backup, data_dir(follower))
    follower.start()
    barrier(cluster.leader(), cluster.nodes)


@pytest.mark.parametrize("case", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_member_with_damaged_state_refuses_to_start(
    case: tuple[str, Callable[[str], None], str], stopped_follower: ServerProcess
) -> None:
    name, damage, problem = case
    damage(os.path.join(data_dir(stopped_follower), name))
    with pytest.raises(StartError) as refused:
        stopped_follower.start(timeout_s=30)
    message = str(refused.value)
    assert problem in message
    assert "CLUSTER FORGET" in message and "--cluster-join yes" in message


def test_repair_log_refuses_a_members_directory(stopped_follower: ServerProcess) -> None:
    directory = data_dir(stopped_follower)
    before = sorted(os.listdir(directory))
    repair = subprocess.run(
        [sys.executable, "-m", "nomadkv.cli", "repair-log", "--dir", directory],
        capture_output=True,
        text=True,
        check=False,
    )
    assert repair.returncode == 1
    assert "belongs to a cluster member" in repair.stderr and "CLUSTER FORGET" in repair.stderr
    assert sorted(os.listdir(directory)) == before
