"""pike-core poller backend on Windows I/O completion ports.  Runs on: Windows."""
