"""Jepsen-style testing: record what concurrent clients saw while a nemesis
breaks the nodes, then check that the history is linearizable.

Pure modules (no I/O, no clock, no threads): `history` (the record and its
JSON-lines form), `linearizability` (the checker), `simulated` (histories from
a perfect store, and mutations, for testing the checker). Shell modules:
`nemesis` (faults: kill, pause, network partitions with iptables) and
`runner` (client workers, the run itself); ``python -m nomadkv.jepsen check
FILE`` re-checks a saved history. See docs/jepsen.md.
"""
