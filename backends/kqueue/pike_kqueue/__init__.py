"""pike-core poller backend on kqueue(2): macOS and the BSDs, O(1) in idle connections.

Runs on: macOS, FreeBSD, OpenBSD, NetBSD, DragonFly.
"""
