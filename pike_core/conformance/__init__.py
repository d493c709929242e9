"""The conformance suite every poller backend must pass (see :mod:`.plugin`)."""
