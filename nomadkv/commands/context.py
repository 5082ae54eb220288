"""What a read handler may see of the connection that runs it.

The server's client connection implements this; tests can pass any object
with these attributes. Pure: a typing protocol only.
"""

from __future__ import annotations

from typing import Protocol

from nomadkv.keyspace import Keyspace


class Session(Protocol):
    keyspace: Keyspace
    now_ms: int  # the wall clock in Unix milliseconds, read once per batch of commands
    resp3: bool
