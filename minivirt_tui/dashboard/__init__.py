"""The full-screen dashboard, ``miv tui``: a Textual app over the same core as the CLI."""
