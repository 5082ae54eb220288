"""Which data directory a node runs on, and which ones its peers ran on.

Owns two small files of a cluster node's data directory:

- ``identity``: a random id created with the directory's first start and
  never changed. A node whose directory was wiped or replaced comes back
  with a new one, so its peers can tell the new incarnation from the one
  that cast votes and acknowledged entries (docs/cluster.md, "A member that
  lost its data").
- ``peer-identities.json``: the identity each peer first showed this node
  on the bus, by Raft id, and the highest term that peer has used in a
  message since (a peer persists a term before it sends anything in it,
  pre-votes aside, so a peer that later shows a lower term runs on a data
  directory older than the one it ran on: restored from a copy). The
  identity is written (fsync'd) before that peer's first message is taken,
  a new highest term as it arrives.

Both are written whole to a temporary name, fsync'd and renamed.
"""

from __future__ import annotations

import json
import os

from nomadkv.storage.log import REJOIN_HINT, CorruptLog
from nomadkv.storage.snapshot import write_bytes_atomically

IDENTITY_NAME = "identity"
PEER_IDENTITIES_NAME = "peer-identities.json"


def load_or_create_identity(data_dir: str) -> str:
    """This directory's identity, created (durably) on its first start."""
    path = os.path.join(data_dir, IDENTITY_NAME)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        identity = os.urandom(16).hex()
        write_bytes_atomically(path, identity.encode("ascii") + b"\n")
        return identity
    identity = data.decode("ascii", errors="replace").strip()
    if len(identity) != 32 or any(c not in "0123456789abcdef" for c in identity):
        # Written atomically: anything else is damage, not a first start.
        raise CorruptLog(f"{path} is damaged. " + REJOIN_HINT.format(data_dir=data_dir))
    return identity


class PeerIdentities:
    """The identity each peer first showed, and the highest term it has used in
    a message since, by Raft id, kept in the data directory."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, PEER_IDENTITIES_NAME)
        self.known: dict[int, str] = {}
        self.terms: dict[int, int] = {}
        try:
            with open(self.path, "rb") as f:
                stored = json.loads(f.read())
            for raft_id, seen in stored.items():
                if isinstance(seen, str):  # written before terms were kept
                    self.known[int(raft_id)], self.terms[int(raft_id)] = seen, 0
                else:
                    self.known[int(raft_id)] = str(seen["identity"])
                    self.terms[int(raft_id)] = int(seen["term"])
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Written atomically: an unreadable file is damage. Without it this node
            # would take a wiped peer back as the member it was.
            raise CorruptLog(
                f"{self.path} is damaged ({exc!r}). " + REJOIN_HINT.format(data_dir=data_dir)
            ) from None

    def get(self, raft_id: int) -> str | None:
        return self.known.get(raft_id)

    def record(self, raft_id: int, identity: str) -> None:
        """A new incarnation of ``raft_id``: its identity, and no term seen yet."""
        self.known[raft_id] = identity
        self.terms[raft_id] = 0
        self._save()

    def highest_term(self, raft_id: int) -> int:
        return self.terms.get(raft_id, 0)

    def saw_term(self, raft_id: int, term: int) -> None:
        """``raft_id`` sent a message (not a pre-vote) in ``term``."""
        if raft_id in self.known and term > self.terms.get(raft_id, 0):
            self.terms[raft_id] = term
            self._save()

    def forget(self, raft_ids: set[int] | frozenset[int]) -> None:
        """Drop these peers: whichever incarnation shows up next is recorded."""
        if raft_ids & self.known.keys():
            for raft_id in raft_ids:
                self.known.pop(raft_id, None)
                self.terms.pop(raft_id, None)
            self._save()

    def _save(self) -> None:
        body = json.dumps(
            {
                str(raft_id): {"identity": identity, "term": self.terms.get(raft_id, 0)}
                for raft_id, identity in sorted(self.known.items())
            }
        ).encode()
        write_bytes_atomically(self.path, body)
