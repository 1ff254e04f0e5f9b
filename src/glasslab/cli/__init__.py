"""The ``glasslab`` command."""
