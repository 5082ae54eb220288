"""The nemesis: crashes, pauses and network partitions, on a seeded schedule.

Owns: `Fault` and `schedule` (which faults, on which nodes, when, for how
long: a pure function of a seeded RNG), `Nemesis` (injects and heals them
against real node processes), and `Firewall` (one dedicated iptables chain
per run that cuts traffic between node addresses).

Never: signals a process it was not given, or touches an iptables rule
outside its own chain. The chain is named ``NKV-<pid>-<random>``, hooked
into INPUT and OUTPUT, and removed on exit (``with``, try/finally and
atexit); chains of that pattern left by a run whose process is gone
(SIGKILLed) are removed when a new firewall is installed.

Nodes are `nomadkv.harness.ServerProcess` objects. A cluster's nodes listen
on 127.0.0.2, 127.0.0.3, ... and bind their outgoing peer connections to
their own address, so rules by source and destination address cut them
apart, while clients (connecting from 127.0.0.1) still reach every node, as
in Jepsen where each client talks to its node directly. The nemesis's rules
also name the cluster's ports (client and bus ports, from or to), so other
engineers' clusters on the same addresses are not cut. A cut from A to B
drops every packet A sends B on those ports, TCP acknowledgements included,
as a lossy link would (Jepsen's semantics). The firewall refuses 127.0.0.1
and non-loopback addresses.

Invariants: faults never overlap (one is healed before the next starts);
after `Nemesis.heal_all` every node runs, none is stopped, no rule drops.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from nomadkv.harness import ServerProcess

FaultKind = Literal["kill", "pause", "isolate", "split", "asymmetric"]
FAULT_KINDS: tuple[FaultKind, ...] = ("kill", "pause", "isolate", "split", "asymmetric")
PARTITIONS: tuple[FaultKind, ...] = ("isolate", "split", "asymmetric")

CHAIN_PATTERN = re.compile(r"^NKV-(\d+)-[0-9a-f]{6}$")
IPTABLES_WAIT_S = "10"  # -w: wait for the xtables lock (other runs may hold it)
BUS_PORT_OFFSET = 10000  # a node's bus port is its client port + 10000


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: starts ``at_s`` seconds into the run, lasts ``duration_s``.

    ``nodes`` are indexes into the node list: the node killed or paused; the
    node isolated; the minority side of a split; for ``asymmetric``, the
    nodes whose outgoing traffic to all others is dropped (they still hear
    the others).
    """

    at_s: float
    kind: FaultKind
    nodes: tuple[int, ...]
    duration_s: float

    def describe(self) -> str:
        targets = ",".join(f"n{i}" for i in self.nodes)
        return f"{self.kind} {targets} for {self.duration_s:.2f}s"


def schedule(
    rng: random.Random,
    kinds: Sequence[FaultKind],
    nodes: int,
    duration_s: float,
    gap_s: tuple[float, float] = (1.0, 3.0),
    fault_s: tuple[float, float] = (0.3, 1.5),
) -> list[Fault]:
    """Faults for a run of ``duration_s``: a quiet gap, a fault, a gap, ...,
    each fault healed before ``duration_s``."""
    if not kinds:
        return []
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
    if nodes < 2 and any(kind in PARTITIONS for kind in kinds):
        raise ValueError("a partition needs at least two nodes")
    faults: list[Fault] = []
    t = rng.uniform(*gap_s)
    while True:
        kind = rng.choice(list(kinds))
        length = rng.uniform(*fault_s)
        if t + length > duration_s:
            return faults
        if kind in ("kill", "pause", "isolate"):
            targets: tuple[int, ...] = (rng.randrange(nodes),)
        else:
            # The minority (split) or the senders (asymmetric): never half or more.
            size = rng.randint(1, max(1, (nodes - 1) // 2))
            targets = tuple(sorted(rng.sample(range(nodes), size)))
        faults.append(Fault(round(t, 3), kind, targets, round(length, 3)))
        t += length + rng.uniform(*gap_s)


class FirewallError(Exception):
    pass


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["iptables", "-w", IPTABLES_WAIT_S, *args], capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise FirewallError(f"iptables {' '.join(args)}: {result.stderr.strip()}")
    return result


def _node_address(host: str) -> str:
    address = ipaddress.ip_address(host)
    if not address.is_loopback or address.version != 4:
        raise FirewallError(f"refusing to cut traffic of {host}: only 127.0.0.0/8 node addresses")
    if host == "127.0.0.1":
        raise FirewallError("refusing to cut 127.0.0.1: clients and other tests use it")
    return host


class Firewall:
    """Our own iptables chain; rules drop traffic between node addresses."""

    def __init__(self) -> None:
        self.chain = f"NKV-{os.getpid()}-{secrets.token_hex(3)}"
        self.installed = False
        self.lock = threading.Lock()

    @staticmethod
    def why_unavailable() -> str:
        """Empty if partitions can be made here, else why not."""
        if shutil.which("iptables") is None:
            return "iptables is not installed"
        if os.geteuid() != 0:
            return "iptables needs root"
        probe = _iptables("-S", "OUTPUT", check=False)
        if probe.returncode != 0:
            return f"iptables does not work here: {probe.stderr.strip()}"
        return ""

    def __enter__(self) -> Firewall:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def install(self) -> None:
        with self.lock:
            if self.installed:
                return
            remove_stale_chains()
            _iptables("-N", self.chain)
            self.installed = True
            atexit.register(self.remove)
            _iptables("-I", "INPUT", "-j", self.chain)
            _iptables("-I", "OUTPUT", "-j", self.chain)

    def drop(self, source: str, destination: str, ports: Iterable[int] = ()) -> None:
        """Drop packets from ``source`` to ``destination`` (one direction).

        With ``ports``, only TCP packets from or to one of those ports (on
        either end): the traffic of one cluster, while other clusters on the
        same addresses (other ports) and clients (from 127.0.0.1) pass.
        """
        with self.lock:
            if not self.installed:
                raise FirewallError("install the firewall first")
            addresses = [
                "-s",
                f"{_node_address(source)}/32",
                "-d",
                f"{_node_address(destination)}/32",
            ]
            if not ports:
                _iptables("-A", self.chain, *addresses, "-j", "DROP")
            for port in sorted(set(ports)):
                for end in ("--dport", "--sport"):
                    rule = [*addresses, "-p", "tcp", "-m", "tcp", end, str(port), "-j", "DROP"]
                    _iptables("-A", self.chain, *rule)

    def rules(self) -> list[str]:
        """Our chain's rules, as ``iptables -S`` prints them."""
        with self.lock:
            if not self.installed:
                return []
            lines = _iptables("-S", self.chain).stdout.splitlines()
            return [line for line in lines if line.startswith("-A ")]

    def heal(self) -> None:
        with self.lock:
            if self.installed:
                _iptables("-F", self.chain)

    def remove(self) -> None:
        """Unhook and delete our chain. Safe to call twice."""
        with self.lock:
            if not self.installed:
                return
            _remove_chain(self.chain)
            self.installed = False
            atexit.unregister(self.remove)


def _remove_chain(chain: str) -> None:
    for hook in ("INPUT", "OUTPUT"):
        # -D removes one matching jump per call; a chain hooked twice needs two.
        while _iptables("-D", hook, "-j", chain, check=False).returncode == 0:
            pass
    _iptables("-F", chain, check=False)
    _iptables("-X", chain, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_chains() -> list[str]:
    """Remove chains of our naming pattern whose creating process is gone."""
    listing = _iptables("-S", check=False).stdout.splitlines()
    stale = []
    for line in listing:
        parts = line.split()
        if len(parts) == 2 and parts[0] == "-N":
            match = CHAIN_PATTERN.match(parts[1])
            if match and not _pid_alive(int(match.group(1))):
                stale.append(parts[1])
    for chain in stale:
        _remove_chain(chain)
    return stale


class Nemesis:
    """Injects faults into ``nodes`` and heals them.

    ``restart_node(i)`` brings node ``i`` back after a kill (a standalone
    node: ``nodes[i].start()``; a cluster node: the same, it rejoins from its
    own disk). ``on_event(action, detail)`` records what happened, for the
    history.
    """

    def __init__(
        self,
        nodes: Sequence[ServerProcess],
        restart_node: Callable[[int], None],
        on_event: Callable[[str, str], None],
        firewall: Firewall | None = None,
    ) -> None:
        self.nodes = nodes
        self.restart_node = restart_node
        self.on_event = on_event
        self.firewall = firewall
        self.ports = sorted({p for node in nodes for p in (node.port, node.port + BUS_PORT_OFFSET)})
        self.killed: set[int] = set()
        self.paused: set[int] = set()

    def run(self, faults: Sequence[Fault], started_at: float, stop: threading.Event) -> None:
        """Play ``faults`` (times relative to ``started_at``, a time.monotonic
        value) until done or ``stop`` is set; always ends healed."""
        try:
            for fault in faults:
                if stop.wait(max(0.0, started_at + fault.at_s - time.monotonic())):
                    return
                self.inject(fault)
                stop.wait(fault.duration_s)
                self.heal_all()
        finally:
            self.heal_all()

    def inject(self, fault: Fault) -> None:
        self.on_event("start", fault.describe())
        if fault.kind == "kill":
            for i in fault.nodes:
                self.nodes[i].kill()
                self.killed.add(i)
        elif fault.kind == "pause":
            for i in fault.nodes:
                self.nodes[i].signal(signal.SIGSTOP)
                self.paused.add(i)
        else:
            self._partition(fault)

    def _partition(self, fault: Fault) -> None:
        # Every port of the cluster (client ports and bus ports = client port
        # + 10000): peer traffic is cut, other clusters on these addresses not.
        if self.firewall is None:
            raise FirewallError(f"{fault.kind} needs a firewall")
        hosts = [node.host for node in self.nodes]
        inside = set(fault.nodes)
        outside = [i for i in range(len(hosts)) if i not in inside]
        for a in sorted(inside):
            for b in outside:
                self.firewall.drop(hosts[a], hosts[b], self.ports)
                if fault.kind != "asymmetric":
                    self.firewall.drop(hosts[b], hosts[a], self.ports)

    def heal_all(self) -> None:
        """Resume paused nodes, restart killed ones, drop no more packets."""
        healed = []
        if self.firewall is not None and self.firewall.rules():
            self.firewall.heal()
            healed.append("network")
        for i in sorted(self.paused):
            self.nodes[i].signal(signal.SIGCONT)
            healed.append(f"resumed n{i}")
        self.paused.clear()
        for i in sorted(self.killed):
            self.restart_node(i)
            healed.append(f"restarted n{i}")
        self.killed.clear()
        if healed:
            self.on_event("heal", ", ".join(healed))
