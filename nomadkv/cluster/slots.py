"""Hash slots, exactly as Redis Cluster computes them. Pure.

slot = CRC16-XMODEM(hash tag or key) mod 16384, where the hash tag is the
part between the first ``{`` and the first ``}`` after it, when non-empty.
``binascii.crc_hqx(data, 0)`` is CRC16-XMODEM (polynomial 0x1021, initial
value 0) computed in C.
"""

from __future__ import annotations

from binascii import crc_hqx

SLOTS = 16384


def hash_tag(key: bytes) -> bytes:
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: bytes) -> int:
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc_hqx(key, 0) & 0x3FFF


def slot_of_keys(keys: list[bytes]) -> int | None:
    """The one slot all ``keys`` hash to, or None when they span several (CROSSSLOT)."""
    slot = key_slot(keys[0])
    for key in keys[1:]:
        if key_slot(key) != slot:
            return None
    return slot
