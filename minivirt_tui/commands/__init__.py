"""The ``miv`` subcommands, one module per noun. Each module lists its ``COMMANDS``."""
