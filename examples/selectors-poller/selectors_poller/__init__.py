"""A pike-core poller backend on the standard library's ``selectors.DefaultSelector``:
the worked example of "Shipping your own poller" in pike-core's README."""
