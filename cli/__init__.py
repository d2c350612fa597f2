"""raftlog's command line (installed as ``raftlog.cli``): typer commands, rich output."""
