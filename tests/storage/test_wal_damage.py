"""Random logs, random damage: recovery either cuts a torn tail or raises
CorruptLog, and never hands out a record that was not written."""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nomadkv.storage.log import HEADER_SIZE, CorruptLog, Log


@dataclass
class Placed:
    index: int
    path: str
    start: int
    end: int


def write_log(
    directory: str, payloads: list[bytes], terms: list[int], segment_bytes: int
) -> list[Placed]:
    log = Log(directory, segment_bytes)
    log.open()
    for index, (payload, term) in enumerate(zip(payloads, terms, strict=True), start=1):
        log.append([(index, term, 1 + index % 2, payload)])
    log.close()
    placed = []
    index = 1
    for name in sorted(n for n in os.listdir(directory) if n.endswith(".seg")):
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            end = pos + HEADER_SIZE + struct.unpack_from("<I", data, pos)[0]
            placed.append(Placed(index, path, pos, end))
            index += 1
            pos = end
    assert index == len(payloads) + 1
    return placed


DAMAGES = [
    "truncate-last",
    "append-zeros",
    "append-garbage",
    "zero-range",
    "garbage-range",
    "flip-bytes",
    "delete-middle-segment",
    "delete-last-segment",
    "truncate-earlier-segment",
]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_random_damage_is_cut_or_refused_never_misread(data) -> None:
    payloads = data.draw(
        st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=50), label="payloads"
    )
    steps = data.draw(st.lists(st.booleans(), min_size=len(payloads), max_size=len(payloads)))
    terms, term = [], 1
    for step in steps:
        term += step
        terms.append(term)
    segment_bytes = data.draw(st.sampled_from([300, 1000, 1 << 20]), label="segment_bytes")
    directory = tempfile.mkdtemp(prefix="wal-damage-")
    try:
        placed = write_log(directory, payloads, terms, segment_bytes)
        files = sorted({p.path for p in placed})
        damage = data.draw(st.sampled_from(DAMAGES), label="damage")
        if damage == "truncate-earlier-segment" and len(files) < 2:
            damage = "flip-bytes"
        if damage == "delete-middle-segment" and len(files) < 3:
            damage = "flip-bytes"
        changed: dict[str, list[tuple[int, int]]] = {}  # path -> altered byte ranges
        removed_files: set[str] = set()
        last = files[-1]
        last_size = os.path.getsize(last)
        rng_bytes = data.draw(st.binary(min_size=1, max_size=200), label="garbage")

        if damage == "truncate-last":
            cut = data.draw(st.integers(0, last_size - 1), label="cut")
            with open(last, "r+b") as f:
                f.truncate(cut)
            changed[last] = [(cut, last_size)]
        elif damage in ("append-zeros", "append-garbage"):
            with open(last, "ab") as f:
                f.write(b"\0" * len(rng_bytes) if damage == "append-zeros" else rng_bytes)
        elif damage in ("zero-range", "garbage-range", "flip-bytes"):
            path = data.draw(st.sampled_from(files), label="file")
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                content = bytearray(f.read())
            if damage == "flip-bytes":
                spots = data.draw(
                    st.lists(st.integers(0, size - 1), min_size=1, max_size=4, unique=True)
                )
                for spot in spots:
                    content[spot] ^= 1 + spot % 255
                changed[path] = [(s, s + 1) for s in spots]
            else:
                lo = data.draw(st.integers(0, size - 1), label="lo")
                hi = data.draw(st.integers(lo + 1, min(size, lo + 400)), label="hi")
                fill = b"\0" * (hi - lo) if damage == "zero-range" else (rng_bytes * 400)[: hi - lo]
                if bytes(content[lo:hi]) == fill:
                    fill = bytes(b ^ 0x5A for b in fill)
                changed[path] = [(i, i + 1) for i in range(lo, hi) if content[i] != fill[i - lo]]
                content[lo:hi] = fill
            with open(path, "wb") as f:
                f.write(content)
        elif damage == "delete-middle-segment":
            # Not the first: a log missing its front looks compacted, which is
            # legitimate; only recovery, knowing the snapshot, can tell (test_recovery).
            victim = data.draw(st.sampled_from(files[1:-1]), label="victim")
            os.unlink(victim)
            removed_files.add(victim)
        elif damage == "delete-last-segment":
            os.unlink(last)
            removed_files.add(last)
        elif damage == "truncate-earlier-segment":
            victim = data.draw(st.sampled_from(files[:-1]), label="victim")
            size = os.path.getsize(victim)
            cut = data.draw(st.integers(0, size - 1), label="cut")
            with open(victim, "r+b") as f:
                f.truncate(cut)
            changed[victim] = [(cut, size)]

        def altered(p: Placed) -> bool:
            return p.path in removed_files or any(
                lo < p.end and p.start < hi for lo, hi in changed.get(p.path, [])
            )

        # The log was closed, so its last segment's records were durable and NEWEST
        # names it: losing that segment, or every record in it, is never a torn write.
        bad = [p for p in placed if altered(p)]
        if damage == "delete-last-segment":
            expect_error, expect_count = True, 0
        elif not bad:
            expect_error, expect_count = False, len(placed)
        else:
            first_bad = bad[0]
            intact_after = any(not altered(p) for p in placed if p.index > first_bad.index)
            existing = [f for f in files if f not in removed_files]
            in_last_file = first_bad.path == existing[-1]
            emptied_last = in_last_file and not any(
                p.path == first_bad.path and p.index < first_bad.index for p in placed
            )
            expect_error = intact_after or not in_last_file or emptied_last
            expect_count = first_bad.index - 1

        log = Log(directory, segment_bytes)
        try:
            log.open()
            records = list(log.read(log.first_index))
        except CorruptLog:
            assert expect_error, f"{damage}: refused a log whose damage is a torn tail"
            return
        finally:
            log.close()
        assert not expect_error, f"{damage}: accepted damage before the tail"
        written = [
            (i, terms[i - 1], 1 + i % 2, payloads[i - 1]) for i in range(1, len(payloads) + 1)
        ]
        got = [(r.index, r.term, r.kind, r.payload) for r in records]
        assert got == written[: len(got)], "a record that was not written came back"
        assert len(got) == expect_count
        # The cut log takes appends again and reopens to the same records.
        log = Log(directory, segment_bytes)
        log.open()
        log.append([(len(got) + 1, 99, 1, b"after")])
        log.close()
        log = Log(directory, segment_bytes)
        log.open()
        assert [(r.index, r.payload) for r in log.read(1)][-1] == (len(got) + 1, b"after")
        log.close()
    finally:
        shutil.rmtree(directory)
