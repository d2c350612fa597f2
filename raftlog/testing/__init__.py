"""raftlog.testing."""
