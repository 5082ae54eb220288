"""The nemesis: its seeded schedule, and network partitions with our own iptables chain.

The firewall tests need root and a working iptables (they are skipped,
saying why, elsewhere). They cut real traffic between sockets bound to
127.0.0.201-203 (clusters of other tests live on 127.0.0.2, .3, ...), check
that 127.0.0.1 (where clients live) and other ports are never cut, and that
nothing of ours is left behind.
"""

from __future__ import annotations

import itertools
import random
import socket
import subprocess
from collections.abc import Iterator

import pytest

from nomadkv.harness import ServerProcess
from nomadkv.jepsen.nemesis import (
    FAULT_KINDS,
    Fault,
    Firewall,
    FirewallError,
    Nemesis,
    schedule,
)

# --- the schedule (pure) ---------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_schedule_is_seeded_sequential_and_within_the_run(seed: int) -> None:
    plan = schedule(random.Random(seed), FAULT_KINDS, 5, 120.0)
    assert plan == schedule(random.Random(seed), FAULT_KINDS, 5, 120.0)
    assert len(plan) >= 20
    for before, after in itertools.pairwise(plan):
        assert before.at_s + before.duration_s < after.at_s  # healed before the next
    assert plan[-1].at_s + plan[-1].duration_s <= 120.0
    for fault in plan:
        assert all(0 <= i < 5 for i in fault.nodes)
        assert len(set(fault.nodes)) == len(fault.nodes)
        if fault.kind in ("split", "asymmetric"):
            assert 1 <= len(fault.nodes) <= 2  # a strict minority of 5
        else:
            assert len(fault.nodes) == 1
    assert {f.kind for f in plan} == set(FAULT_KINDS)


def test_schedule_refuses_partitions_of_one_node_and_unknown_faults() -> None:
    with pytest.raises(ValueError, match="two nodes"):
        schedule(random.Random(1), ("kill", "isolate"), 1, 30.0)
    with pytest.raises(ValueError, match="unknown fault"):
        schedule(random.Random(1), ("meteor",), 3, 30.0)  # type: ignore[arg-type]
    assert schedule(random.Random(1), (), 3, 30.0) == []
    assert schedule(random.Random(1), ("kill",), 1, 0.5) == []


# --- the firewall (root) -----------------------------------------------------------

why_not = Firewall.why_unavailable()
needs_iptables = pytest.mark.skipif(bool(why_not), reason=why_not or "iptables works")

HOSTS = ["127.0.0.201", "127.0.0.202", "127.0.0.203"]


def iptables_lines() -> list[str]:
    out = subprocess.run(["iptables", "-w", "10", "-S"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def tcp_connects(source: str, destination: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        sock.bind((source, 0))
        try:
            sock.connect((destination, port))
        except OSError:
            return False
        return True


def udp_delivers(source: str, destination: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind((destination, 0))
        rx.settimeout(0.3)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.bind((source, 0))
            try:
                tx.sendto(b"ping", rx.getsockname())
            except PermissionError:
                return False  # dropped in OUTPUT: the sender hears of it at once
        try:
            return rx.recv(16) == b"ping"
        except TimeoutError:
            return False


@pytest.fixture
def listening() -> Iterator[dict[str, socket.socket]]:
    """A listening TCP socket on each test address and on 127.0.0.1."""
    sockets = {}
    for host in [*HOSTS, "127.0.0.1"]:
        sock = socket.socket()
        sock.bind((host, 0))
        sock.listen(64)
        sockets[host] = sock
    yield sockets
    for sock in sockets.values():
        sock.close()


@pytest.fixture
def listeners(listening: dict[str, socket.socket]) -> dict[str, int]:
    """The port each of them listens on."""
    return {host: sock.getsockname()[1] for host, sock in listening.items()}


@needs_iptables
def test_rules_cut_one_pair_of_addresses_and_nothing_is_left_behind(
    listeners: dict[str, int],
) -> None:
    before = [line for line in iptables_lines() if "NKV-" not in line]
    a, b, c = HOSTS
    with Firewall() as firewall:
        chain = firewall.chain
        assert any(chain in line for line in iptables_lines())
        assert tcp_connects(a, b, listeners[b])
        firewall.drop(a, b)
        firewall.drop(b, a)
        assert firewall.rules() == [
            f"-A {chain} -s {a}/32 -d {b}/32 -j DROP",
            f"-A {chain} -s {b}/32 -d {a}/32 -j DROP",
        ]
        assert not tcp_connects(a, b, listeners[b])
        assert not tcp_connects(b, a, listeners[a])
        assert tcp_connects(a, c, listeners[c])
        assert tcp_connects("127.0.0.1", b, listeners[b])  # clients still reach every node
        assert tcp_connects(a, "127.0.0.1", listeners["127.0.0.1"])
        firewall.heal()
        assert firewall.rules() == []
        assert tcp_connects(a, b, listeners[b])
    after = iptables_lines()
    assert not any(chain in line for line in after)
    assert set(before) <= set(after)  # nobody else's rule was touched
    firewall.remove()  # twice is harmless


@needs_iptables
def test_port_scoped_rules_cut_one_cluster_one_way_and_spare_other_ports(
    listening: dict[str, socket.socket], listeners: dict[str, int]
) -> None:
    a, b, _ = HOSTS
    with socket.socket() as other:
        other.bind((b, 0))
        other.listen(8)
        other_port = other.getsockname()[1]
        port = listeners[a]
        with socket.create_connection((a, port), source_address=(b, 0)) as from_b:
            from_b.settimeout(0.3)
            listening[a].settimeout(2.0)
            accepted, _ = listening[a].accept()
            with accepted, Firewall() as firewall:
                firewall.drop(a, b, [port, listeners[b]])
                assert len(firewall.rules()) == 4
                assert not tcp_connects(a, b, listeners[b])  # to b's port: cut
                assert tcp_connects(a, b, other_port)  # another cluster's port: not cut
                assert tcp_connects(b, "127.0.0.1", listeners["127.0.0.1"])
                from_b.sendall(b"b to a")  # b -> a still flows...
                accepted.settimeout(2.0)
                assert accepted.recv(16) == b"b to a"
                accepted.sendall(b"a to b")  # ...a -> b (from a's port) does not
                with pytest.raises(TimeoutError):
                    from_b.recv(16)


@needs_iptables
def test_one_direction_only() -> None:
    a, b, _ = HOSTS
    with Firewall() as firewall:
        firewall.drop(a, b)
        assert not udp_delivers(a, b)
        assert udp_delivers(b, a)


def test_firewall_refuses_client_and_non_loopback_addresses() -> None:
    firewall = Firewall()
    firewall.installed = True  # the address check comes before iptables is called
    with pytest.raises(FirewallError, match=r"127\.0\.0\.1"):
        firewall.drop("127.0.0.1", "127.0.0.2")
    with pytest.raises(FirewallError, match="only 127"):
        firewall.drop("127.0.0.2", "10.0.0.1")
    with pytest.raises(FirewallError, match="install"):
        Firewall().drop("127.0.0.2", "127.0.0.3")


@needs_iptables
def test_a_chain_left_by_a_dead_run_is_removed_and_live_ones_are_kept() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"NKV-{dead.pid}-abc123"
    subprocess.run(["iptables", "-w", "10", "-N", stale], check=True)
    subprocess.run(["iptables", "-w", "10", "-I", "OUTPUT", "-j", stale], check=True)
    try:
        with Firewall() as first, Firewall() as second:
            lines = iptables_lines()
            assert not any(stale in line for line in lines)
            assert any(first.chain in line for line in lines)
            assert any(second.chain in line for line in lines)
    finally:
        subprocess.run(["iptables", "-w", "10", "-D", "OUTPUT", "-j", stale], check=False)
        subprocess.run(["iptables", "-w", "10", "-X", stale], check=False)


@needs_iptables
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault(0, "isolate", (0,), 1), {(0, 1), (1, 0), (0, 2), (2, 0)}),
        (Fault(0, "split", (2,), 1), {(2, 0), (0, 2), (2, 1), (1, 2)}),
        (Fault(0, "asymmetric", (1,), 1), {(1, 0), (1, 2)}),
    ],
)
def test_nemesis_partitions_become_rules_and_heal_removes_them(
    fault: Fault, expected: set[tuple[int, int]]
) -> None:
    nodes = [ServerProcess([], host, 7000, "/dev/null") for host in HOSTS]
    events: list[tuple[str, str]] = []
    with Firewall() as firewall:
        nemesis = Nemesis(nodes, lambda i: None, lambda *e: events.append(e), firewall)
        nemesis.inject(fault)
        rules = [rule.split() for rule in firewall.rules()]
        dropped = {(HOSTS.index(r[3][:-3]), HOSTS.index(r[5][:-3])) for r in rules}
        assert dropped == expected
        # each directed pair: from or to the client port 7000 and the bus port 17000
        assert len(rules) == 4 * len(expected)
        assert {(r[10], r[11]) for r in rules} == {
            (end, port) for end in ("--dport", "--sport") for port in ("7000", "17000")
        }
        nemesis.heal_all()
        assert firewall.rules() == []
    assert events == [("start", fault.describe()), ("heal", "network")]
