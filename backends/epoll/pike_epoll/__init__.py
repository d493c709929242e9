"""pike-core poller backend on epoll(7): Linux, O(1) in idle connections.  Runs on: Linux."""
