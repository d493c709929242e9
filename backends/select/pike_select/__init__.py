"""pike-core poller backend on select(2): portable fallback, FD_SETSIZE-limited.  Runs on: everywhere."""
