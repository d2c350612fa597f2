"""raftlog: a distributed commit log in the model of Apache Kafka, with Raft everywhere.

Cluster metadata lives in one pysyncobj Raft group that every broker embeds; each
partition's log is its own Raft group (``raftlog.raft``) over a segmented on-disk log
(``raftlog.storage``). See DESIGN.md in the shared folder for the map.
"""

__version__ = "0.1.0"
