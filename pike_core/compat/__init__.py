"""Drop-in replacements for the transport modules pike-core grew out of (``pike``, ``asyncore``)."""
