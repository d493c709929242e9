"""pike-core poller backend on poll(2): POSIX, no descriptor limit.  Runs on: POSIX."""
