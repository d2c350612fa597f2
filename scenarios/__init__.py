"""Fault-injection scenarios against real broker processes (installed as ``raftlog.scenarios``)."""
