"""Counters and the latency histogram behind INFO and /metrics."""

from __future__ import annotations

from bisect import bisect_left

# Upper bounds in seconds of the command latency histogram (Prometheus buckets).
LATENCY_BUCKETS_S = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)


class Histogram:
    """Cumulative-on-export histogram: ``observe`` counts into one bucket."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += times
        self.count += times
        self.sum += value * times

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, count of observations <= bound), ending with +Inf."""
        total, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


class Stats:
    __slots__ = (
        "commands_timed",
        "connections_received",
        "connections_rejected",
        "expired_keys",
        "fsync_errors",
        "fsyncs",
        "latency",
        "log_bytes_written",
        "net_input_bytes",
        "net_output_bytes",
        "protocol_errors",
        "snapshots",
        "unexpected_errors",
        "write_latency",
    )

    def __init__(self) -> None:
        self.commands_timed = 0
        self.connections_received = 0
        self.connections_rejected = 0
        self.expired_keys = 0
        self.fsyncs = 0
        self.fsync_errors = 0
        self.log_bytes_written = 0
        self.net_input_bytes = 0
        self.net_output_bytes = 0
        self.protocol_errors = 0
        self.snapshots = 0
        self.unexpected_errors = 0
        # Time a command spends in the server, measured on a sample of the batches
        # of commands read together and shared among them (counts scaled to the
        # whole); writes also record their wait for the commit, every entry.
        self.latency = Histogram()
        self.write_latency = Histogram()
