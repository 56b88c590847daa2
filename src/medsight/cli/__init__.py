"""The ``medsight`` command line (one typer app; each command lives in its own module)."""
