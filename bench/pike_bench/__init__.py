"""The side-by-side benchmark suite: ``pike-core bench`` (see :mod:`.runner`)."""
