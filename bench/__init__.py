"""Benchmarks behind the README's performance figures (``make bench``).

Every figure comes from a script here that starts real servers with
``nomadkv.harness`` on free loopback ports (a NomadKV node and a reference
``redis-server``), drives them with Redis's own tools (``redis-benchmark``,
``redis-cli --pipe``), stops them by PID and writes its results as JSON to
``bench/results/`` (not tracked by git). See docs/benchmarks.md.
"""
