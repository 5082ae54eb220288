"""/metrics: the Prometheus text format is well formed and the numbers move
with what the node does."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pytest
import redis
from sidecar_client import HttpClient, SidecarNode

from nomadkv.http.exposition import CONTENT_TYPE, Exposition, format_number

METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(
    rf"^(?P<name>{METRIC_NAME})(?:\{{(?P<labels>{LABEL}(?:,{LABEL})*)\}})? "
    r"(?P<value>[-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|Inf|NaN))$"
)
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
HELP = re.compile(rf"^# HELP (?P<name>{METRIC_NAME}) .*$")
TYPE = re.compile(rf"^# TYPE (?P<name>{METRIC_NAME}) (?P<kind>counter|gauge|histogram)$")


class MalformedExposition(AssertionError):
    pass


@dataclass
class Family:
    kind: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value_or_zero(self, **labels: str) -> float:
        """A labelled series appears with its first event: absent means 0 so far."""
        return self.value(**labels) if any(s[1] == labels for s in self.samples) else 0.0

    def value(self, **labels: str) -> float:
        matches = [v for _, sample_labels, v in self.samples if sample_labels == labels]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} samples with labels {labels}")
        return matches[0]


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_exposition(text: str) -> dict[str, Family]:
    """Families by name. Checks: every line is a comment or ``name{labels} value``;
    each family has HELP and TYPE before its samples, and only once; every sample
    belongs to the family declared last; histograms have cumulative buckets
    ending with +Inf, whose count equals _count, and a _sum."""
    if not text.endswith("\n"):
        raise MalformedExposition("the text must end with a newline")
    families: dict[str, Family] = {}
    current: str | None = None
    helped: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if m := HELP.match(line):
            helped.add(m["name"])
            continue
        if m := TYPE.match(line):
            name = m["name"]
            if name in families or name not in helped:
                raise MalformedExposition(f"line {number}: TYPE of {name} repeated or no HELP")
            families[name] = Family(m["kind"])
            current = name
            continue
        m = SAMPLE.match(line)
        if m is None:
            raise MalformedExposition(f"line {number} is not a sample: {line!r}")
        name = m["name"]
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        family_name = (
            base if current is not None and families[current].kind == "histogram" else name
        )
        if family_name != current:
            raise MalformedExposition(f"line {number}: sample {name} outside its family")
        labels = {k: unescape(v) for k, v in LABEL_PAIR.findall(m["labels"] or "")}
        value = float(m["value"].replace("Inf", "inf"))
        families[family_name].samples.append((name, labels, value))
    for name, family in families.items():
        if family.kind == "counter" and not name.endswith("_total"):
            raise MalformedExposition(f"counter {name} does not end with _total")
        if family.kind == "histogram":
            check_histogram(name, family)
    return families


def check_histogram(name: str, family: Family) -> None:
    buckets = [(s[1]["le"], s[2]) for s in family.samples if s[0] == f"{name}_bucket"]
    counts = [s[2] for s in family.samples if s[0] == f"{name}_count"]
    sums = [s[2] for s in family.samples if s[0] == f"{name}_sum"]
    if not buckets or len(counts) != 1 or len(sums) != 1:
        raise MalformedExposition(f"histogram {name} lacks buckets, _count or _sum")
    bounds = [float(le.replace("Inf", "inf")) for le, _ in buckets]
    if bounds != sorted(bounds) or bounds[-1] != math.inf:
        raise MalformedExposition(f"histogram {name}: bounds not increasing to +Inf")
    values = [count for _, count in buckets]
    if values != sorted(values):
        raise MalformedExposition(f"histogram {name}: buckets are not cumulative")
    if values[-1] != counts[0]:
        raise MalformedExposition(f"histogram {name}: +Inf bucket {values[-1]} != _count")


# -- the checker itself ---------------------------------------------------------

GOOD = """# HELP h A histogram.
# TYPE h histogram
h_bucket{le="0.1"} 1
h_bucket{le="+Inf"} 2
h_sum 0.5
h_count 2
"""


@pytest.mark.parametrize(
    "broken",
    [
        GOOD.replace('h_bucket{le="+Inf"} 2', 'h_bucket{le="1.0"} 2'),
        GOOD.replace('h_bucket{le="+Inf"} 2', 'h_bucket{le="+Inf"} 0'),
        GOOD.replace("h_count 2", "h_count 3"),
        GOOD.replace("h_sum 0.5\n", ""),
        GOOD + "h_count 2\n",
        GOOD + "orphan 1\n",
        GOOD + "# TYPE c counter\nc 1\n",
        GOOD + '# HELP g g\n# TYPE g gauge\ng{a="unterminated} 1\n',
        GOOD + "# HELP g g\n# TYPE g gauge\ng one\n",
        GOOD.rstrip("\n"),
    ],
)
def test_the_checker_rejects_malformed_text(broken: str) -> None:
    with pytest.raises(MalformedExposition):
        parse_exposition(broken)


# -- the writer (pure) -----------------------------------------------------------


def test_label_values_and_help_are_escaped() -> None:
    out = Exposition()
    out.gauge("g", "help with \\ and\nnewline", 1, {"path": 'a"b\\c\nd'})
    text = out.render()
    assert text == (
        '# HELP g help with \\\\ and\\nnewline\n# TYPE g gauge\ng{path="a\\"b\\\\c\\nd"} 1\n'
    )
    assert parse_exposition(text)["g"].samples == [("g", {"path": 'a"b\\c\nd'}, 1.0)]


def test_numbers_are_formatted_as_prometheus_reads_them() -> None:
    assert [format_number(v) for v in (3, 0.25, 1e-05, math.inf, -math.inf)] == [
        "3",
        "0.25",
        "1e-05",
        "+Inf",
        "-Inf",
    ]
    assert format_number(math.nan) == "NaN"


def test_the_writer_refuses_what_would_break_the_format() -> None:
    out = Exposition()
    out.gauge("x", "x", 1)
    with pytest.raises(ValueError, match="declared twice"):
        out.gauge("x", "x", 2)
    with pytest.raises(ValueError, match="_total"):
        out.counter("requests", "no suffix", 1)
    with pytest.raises(ValueError, match=r"\+Inf"):
        out.histogram("h", "h", [(0.1, 1), (1.0, 2)], 0.5)


def test_histograms_render_cumulative_buckets_sum_and_count() -> None:
    out = Exposition()
    out.histogram("h", "h", [(0.1, 1), (1.0, 3), (math.inf, 4)], 2.5, {"route": "/x"})
    family = parse_exposition(out.render())["h"]
    assert family.value(route="/x", le="+Inf") == 4
    assert [s for s in family.samples if s[0] == "h_count"] == [("h_count", {"route": "/x"}, 4)]


# -- a live node -------------------------------------------------------------------


def scrape(api: HttpClient) -> dict[str, Family]:
    answer = api.get("/metrics")
    assert answer.status == 200
    assert answer.content_type == CONTENT_TYPE
    return parse_exposition(answer.body.decode())


EXPECTED_FAMILIES = {
    "nomadkv_commands_total": "counter",
    "nomadkv_command_seconds_total": "counter",
    "nomadkv_command_latency_seconds": "histogram",
    "nomadkv_write_latency_seconds": "histogram",
    "nomadkv_keys": "gauge",
    "nomadkv_keys_with_expiry": "gauge",
    "nomadkv_expired_keys_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "nomadkv_fsyncs_total": "counter",
    "nomadkv_log_written_bytes_total": "counter",
    "nomadkv_connected_clients": "gauge",
    "nomadkv_connections_received_total": "counter",
    "nomadkv_connections_rejected_total": "counter",
    "nomadkv_snapshots_total": "counter",
    "nomadkv_snapshot_in_progress": "gauge",
    "nomadkv_applied_index": "gauge",
    "nomadkv_http_requests_total": "counter",
    "nomadkv_http_request_duration_seconds": "histogram",
}


def test_metrics_parse_and_hold_every_family(api: HttpClient) -> None:
    families = scrape(api)
    kinds = {name: families[name].kind for name in EXPECTED_FAMILIES if name in families}
    assert kinds == EXPECTED_FAMILIES


def test_metrics_follow_the_nodes_work(api: HttpClient, resp: redis.Redis) -> None:
    before = scrape(api)
    resp.set("m1", "v")
    api.set("m2", "v", ttl=600)
    resp.get("m1")
    api.get("/api/v1/get/m2")
    after = scrape(api)

    def grew(name: str, **labels: str) -> float:
        return after[name].value(**labels) - before[name].value_or_zero(**labels)

    assert grew("nomadkv_commands_total", command="set") == 2
    assert grew("nomadkv_commands_total", command="get") == 2
    assert grew("nomadkv_applied_index") >= 2
    assert grew("nomadkv_fsyncs_total") >= 1  # appendfsync always
    assert grew("nomadkv_log_written_bytes_total") > 0
    assert after["nomadkv_keys"].value() == resp.dbsize()
    assert after["nomadkv_keys_with_expiry"].value() >= 1
    assert after["nomadkv_connected_clients"].value() >= 1  # resp is connected
    assert after["process_resident_memory_bytes"].value() > 10 * 1024 * 1024
    route = {"route": "/api/v1/set", "method": "POST", "status": "200"}
    assert grew("nomadkv_http_requests_total", **route) == 1
    # The scrape that produced ``before`` is counted in ``after``.
    metrics_route = {"route": "/metrics", "method": "GET", "status": "200"}
    assert after["nomadkv_http_requests_total"].value(**metrics_route) >= 2


def test_accepted_connections_are_counted(sidecar: SidecarNode, api: HttpClient) -> None:
    families = scrape(api)
    received = families["nomadkv_connections_received_total"].value()
    client = sidecar.resp()
    client.ping()
    client.close()
    assert scrape(api)["nomadkv_connections_received_total"].value() == received + 1
