"""Deterministic simulation of Raft groups: one thread, one seed, every fault.

Owns: the simulated clock (`clock`), disk (`disk`), network (`network`),
application (`machine`), replicas and their Ready loop (`cluster`), client
workload (`workload`), safety checkers (`checker`), the seeded run with its
fault and healing phases (`runner`) and the safety-rule mutations that prove
the checkers can fail (`mutation`).
Never: reads the wall clock or global randomness; a failing run prints the one
command that replays it: `python -m nomadkv.sim --seed <seed>`.
"""
