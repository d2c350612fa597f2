"""The leader's side of log replication: what to send each follower, and when.

Paper 5.3 and thesis 10.2.1. For each follower the leader keeps a ``Progress``
(``progress.py``). A follower being probed gets one append at a time; a follower known to
match gets a stream of appends, as many as its window allows, each at most
``max_append_bytes`` of data. A follower that needs entries below the leader's log start
gets ``InstallLogStart`` instead. Every heartbeat interval, a follower that is caught up
gets an empty append checked at what is known to match (it carries the commit offset and
cannot be refused for a gap); one that made no progress for ``STALLED_HEARTBEATS_MAX``
heartbeats is probed again from its match offset, since its appends were probably lost;
one being probed gets its probe again.

This is a mixin of ``RaftNode``: it reads the node's log, progress and membership and
sends through the node. It changes only ``Progress`` records.
"""

from __future__ import annotations

from raftlog.raft.config import RaftConfig
from raftlog.raft.log_store import Entry
from raftlog.raft.membership import MembershipHistory
from raftlog.raft.messages import AppendEntriesRequest, InstallLogStart, Message
from raftlog.raft.progress import Progress, ProgressState
from raftlog.raft.raft_log import RaftLog
from raftlog.types import NodeId, Offset, Term

# How many heartbeats without any progress make a leader assume its pipelined appends to a
# follower were lost and probe again from what is known to match.
STALLED_HEARTBEATS_MAX = 2


class LeaderReplication:
    # Provided by RaftNode.
    config: RaftConfig
    id: NodeId
    term: Term
    _log: RaftLog
    _commit: Offset
    _progress: dict[NodeId, Progress]
    _memberships: MembershipHistory

    def _send(self, msg: Message, after_persist: bool = False) -> None:
        raise NotImplementedError

    def _broadcast_append(self) -> None:
        for node in sorted(self._progress):
            self._send_appends_to(node)

    def _send_appends_to(self, node: NodeId) -> None:
        """Send what the window allows: one message when probing, a stream when replicating."""
        pr = self._progress[node]
        while pr.can_send() and pr.next_offset < self._log.log_end_offset():
            self._send_append(node, pr)
            if pr.state is not ProgressState.REPLICATE:
                break

    def _send_append(self, node: NodeId, pr: Progress) -> None:
        """One append at ``pr.next_offset`` (empty if nothing is left to send)."""
        prev_offset = Offset(pr.next_offset - 1)
        prev_term = self._log.term_at(prev_offset)
        if prev_term is None or pr.next_offset < self._log.log_start_offset():
            self._send_install_log_start(node, pr)
            return
        entries: list[Entry] = []
        if pr.next_offset < self._log.log_end_offset():
            entries = self._log.entries(pr.next_offset, self.config.max_append_bytes)
            assert entries and entries[0].offset == pr.next_offset, (entries, pr.next_offset)
        end = Offset(entries[-1].last_offset + 1) if entries else pr.next_offset
        self._send_append_request(node, prev_offset, prev_term, tuple(entries))
        pr.on_sent(end, bool(entries))

    def _send_append_request(
        self,
        node: NodeId,
        prev_offset: Offset,
        prev_term: Term,
        entries: tuple[Entry, ...],
        quiesce: bool = False,
    ) -> None:
        msg = AppendEntriesRequest(
            self.config.group,
            self.id,
            node,
            self.term,
            prev_offset,
            prev_term,
            entries,
            self._commit,
            quiesce,
        )
        self._send(msg)

    def _send_install_log_start(self, node: NodeId, pr: Progress) -> None:
        start = self._log.log_start_offset()
        prev_term = self._log.term_at(Offset(start - 1))
        assert prev_term is not None, start
        membership = self._memberships.at(Offset(start - 1))
        msg = InstallLogStart(
            self.config.group, self.id, node, self.term, start, prev_term, self._commit, membership
        )
        self._send(msg)
        pr.become_log_start()

    def _broadcast_heartbeat(self, quiesce: bool = False) -> None:
        """``quiesce``: the last heartbeat before the group goes quiet (``quiesce.py``;
        every follower then replicates and matches the whole log)."""
        end = self._log.log_end_offset()
        for node, pr in sorted(self._progress.items()):
            if pr.state is ProgressState.REPLICATE:
                if pr.match_offset < end and pr.match_offset == pr.match_at_heartbeat:
                    pr.stalled_heartbeats += 1
                else:
                    pr.stalled_heartbeats = 0
                pr.match_at_heartbeat = pr.match_offset
                if pr.stalled_heartbeats >= STALLED_HEARTBEATS_MAX:
                    # No answer for a while: the appends in flight were probably lost.
                    pr.become_probe()
                    self._send_append(node, pr)
                else:
                    self._send_heartbeat(node, pr, quiesce)
                    self._send_appends_to(node)
            else:
                # A probe (or log-start install) unanswered until now is sent again.
                pr.paused = False
                self._send_append(node, pr)

    def _send_heartbeat(self, node: NodeId, pr: Progress, quiesce: bool = False) -> None:
        # Checked at what is known to match, so it is never refused for a gap; it carries
        # the commit offset, and the answer tells the follower's match.
        prev_offset = Offset(pr.match_offset - 1)
        prev_term = self._log.term_at(prev_offset)
        if prev_term is None:
            self._send_install_log_start(node, pr)
            return
        self._send_append_request(node, prev_offset, prev_term, (), quiesce)
