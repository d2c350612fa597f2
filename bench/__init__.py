"""Benchmarks, installed as ``raftlog.bench``: ``raftlog bench produce|consume|e2e|scale|
failover|rebalance|all`` (see ``suite``), and the finer ``python -m raftlog.bench.<name>``
(storage, metadata, codec, wire, ceilings); each prints ratios measured in the same run."""
