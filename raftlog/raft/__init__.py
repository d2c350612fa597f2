"""raftlog.raft."""
