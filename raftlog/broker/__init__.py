"""raftlog.broker."""
