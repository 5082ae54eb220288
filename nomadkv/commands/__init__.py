"""Commands: the table (``table``) and one module per family of handlers.

Importing this package registers every data command in ``table.COMMANDS``:
``strings`` (GET, SET, INCR, ...), ``keys`` (DEL, SCAN, RENAME, ...) and
``expiry`` (EXPIRE, TTL, ...). Server and connection commands (INFO, CLIENT,
CONFIG, ...) touch the process and live in ``nomadkv.server.admin``, which
registers them the same way.
"""

from nomadkv.commands import expiry, keys, strings  # noqa: F401  (registration on import)
