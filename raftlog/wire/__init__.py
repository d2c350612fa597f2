"""raftlog.wire."""
