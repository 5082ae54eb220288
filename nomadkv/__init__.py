"""NomadKV: a Redis-compatible, strongly consistent, shardable key-value store."""

__version__ = "0.1.0"
