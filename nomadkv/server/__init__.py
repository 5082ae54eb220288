"""The shell: client connections, the peer bus, the node runtimes, server commands."""
