"""What a read handler may see of the connection that runs it.

The server's client connection implements this; tests can pass any object
with these attributes. Pure: a typing protocol only.
"""

from __future__ import annotations

from typing import Protocol

from nomadkv.keyspace import Keyspace


class Session(Protocol):
    keyspace: Keyspace
    resp3: bool

    @property
    def now_ms(self) -> int:
        """The wall clock in Unix milliseconds."""
        ...
