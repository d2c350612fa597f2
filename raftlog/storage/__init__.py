"""raftlog.storage."""
