"""Cluster model: hash slots, topology, and the Redis Cluster replies built from it. Pure."""
