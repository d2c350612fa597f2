"""raftlog.runtime."""
