"""The ``chanlog`` subcommands, one module per concern."""
