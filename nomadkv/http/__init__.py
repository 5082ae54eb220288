"""The HTTP sidecar: REST API, Prometheus metrics, health and OpenAPI (aiohttp).

Part of the shell: it runs in the node's event loop and reaches the keyspace
only by running commands through the node's own read and write paths
(``gateway``). See docs/http.md.
"""
