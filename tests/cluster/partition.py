"""Network partitions between cluster nodes on one machine, with iptables.

Owns one dedicated iptables chain per ``Partition`` (a unique name, hooked
into OUTPUT while it exists) and the DROP rules in it. Every node of a
``LocalCluster`` listens on its own 127.0.0.x address, and its outgoing bus
connections leave from that address (bind-source-addr), so a rule "from
address A to address B, TCP to or from bus port P" cuts exactly the peer
traffic of this cluster from A to B: the test's client connections (client
port) and other engineers' clusters (other ports) pass untouched.

Packets are dropped silently, as a real partition does: established bus
connections stall (TCP retransmits) rather than reset, and new dials time out.

Unlike the Jepsen nemesis's Firewall (which drops everything between two
addresses), rules here name the bus port: a one-way cut stays one-way at the
TCP level (the receiver's acknowledgements on its own connection still pass)
and clusters of other tests on the same addresses are not cut.

Never: touches a rule or chain it did not create. ``heal`` and ``close``
are idempotent; use the Partition as a context manager so its chain is
removed even when the test fails (and at exit, if the test process ends first).
"""

from __future__ import annotations

import atexit
import os
import subprocess
from collections.abc import Iterable
from types import TracebackType

IPTABLES = "iptables"


def _iptables(*args: str) -> None:
    subprocess.run([IPTABLES, "-w", *args], check=True, capture_output=True)


class Partition:
    """Drop bus traffic between groups of loopback addresses, for one bus port."""

    def __init__(self, bus_port: int) -> None:
        self.bus_port = bus_port
        # The naming of nomadkv/jepsen/nemesis.py's Firewall (NKV-<pid>-<6 hex>), whose
        # clean-up of chains left by killed runs then covers these too.
        self.chain = f"NKV-{os.getpid()}-{os.urandom(3).hex()}"
        self.hooked = False
        self.cuts: set[tuple[str, str]] = set()

    def __enter__(self) -> Partition:
        _iptables("-N", self.chain)
        try:
            _iptables("-I", "OUTPUT", "1", "-j", self.chain)
        except subprocess.CalledProcessError:
            _iptables("-X", self.chain)
            raise
        self.hooked = True
        atexit.register(self.close)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def cut(self, senders: Iterable[str], receivers: Iterable[str]) -> None:
        """Messages from each of ``senders`` to each of ``receivers`` are lost
        (one direction: the receivers can still reach the senders)."""
        for src in senders:
            for dst in receivers:
                if src == dst or (src, dst) in self.cuts:
                    continue
                # A node sends on the connection it dialled to the peer's bus port, so
                # src's segments to dst's bus port are its messages to dst (and its dials).
                # src's acknowledgements on dst's connection to it leave from src's own
                # bus port and pass: the other direction stays open.
                _iptables(
                    "-A", self.chain, "-s", src, "-d", dst, "-p", "tcp",
                    "--dport", str(self.bus_port), "-j", "DROP",
                )  # fmt: skip
                self.cuts.add((src, dst))

    def isolate(self, group: Iterable[str], rest: Iterable[str]) -> None:
        """A symmetric partition: nothing passes between ``group`` and ``rest``."""
        group, rest = list(group), list(rest)
        self.cut(group, rest)
        self.cut(rest, group)

    def heal(self) -> None:
        """Remove every cut (the chain stays, empty, until ``close``)."""
        if self.hooked:
            _iptables("-F", self.chain)
        self.cuts.clear()

    def close(self) -> None:
        if not self.hooked:
            return
        self.hooked = False
        atexit.unregister(self.close)
        self.cuts.clear()
        _iptables("-D", "OUTPUT", "-j", self.chain)
        _iptables("-F", self.chain)
        _iptables("-X", self.chain)

    def rules(self) -> str:
        """The chain as iptables prints it (for failure messages)."""
        result = subprocess.run(
            [IPTABLES, "-w", "-S", self.chain], capture_output=True, text=True, check=False
        )
        return result.stdout or result.stderr
