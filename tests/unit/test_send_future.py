"""``SendFuture``: one light handle per record over its batch's shared ``BatchCompletion``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from raftlog.client.accumulator import (
    BatchCompletion,
    RecordMetadata,
    ResultTimeoutError,
    SendFuture,
)
from raftlog.client.errors import ClientClosedError, RequestTimedOutError
from raftlog.errors import ErrorCode, RaftlogError
from raftlog.storage.records import Record


def batch_of(*timestamps: int | None) -> tuple[BatchCompletion, list[SendFuture]]:
    records = [Record(None, b"v", (), ts) for ts in timestamps]
    completion = BatchCompletion("t", 3, records)
    return completion, [SendFuture(completion, i) for i in range(len(records))]


def later(fn: Callable[[], object], delay_s: float = 0.05) -> threading.Thread:
    """Run ``fn`` in another thread after ``delay_s``."""

    def run() -> None:
        time.sleep(delay_s)
        fn()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_pending_future() -> None:
    completion, (future,) = batch_of(1000)
    assert not future.done()
    assert future.running()
    assert not future.cancel()
    assert not future.cancelled()
    assert completion.pending_records() == 1
    assert "pending" in repr(future)


def test_result_timeout_raises_result_timeout_error() -> None:
    _, (future,) = batch_of(1000)
    for timeout in (0, 0.02):
        with pytest.raises(ResultTimeoutError) as info:
            future.result(timeout)
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, RaftlogError)
        assert isinstance(info.value, RequestTimedOutError)
        assert info.value.code == ErrorCode.REQUEST_TIMED_OUT
        with pytest.raises(ResultTimeoutError):
            future.exception(timeout)
    assert not future.done()


def test_metadata_per_record_with_the_records_own_timestamps() -> None:
    completion, futures = batch_of(1000, 1001, None, 0)
    assert completion.complete(40, -1)
    assert [f.result(0) for f in futures] == [
        RecordMetadata("t", 3, 40, 1000),
        RecordMetadata("t", 3, 41, 1001),
        RecordMetadata("t", 3, 42, -1),  # no timestamp of its own
        RecordMetadata("t", 3, 43, -1),  # 0 counts as none, as before
    ]
    assert all(f.done() and not f.running() for f in futures)
    assert all(f.exception() is None and f.exception(0) is None for f in futures)
    assert completion.pending_records() == 0
    assert completion.records is None  # the records are not kept once the batch is done
    assert "done" in repr(futures[0])


def test_metadata_with_log_append_time_and_without_offsets() -> None:
    completion, futures = batch_of(1000, 1001)
    completion.complete(7, 5555)
    assert [f.result() for f in futures] == [
        RecordMetadata("t", 3, 7, 5555),
        RecordMetadata("t", 3, 8, 5555),
    ]
    completion, futures = batch_of(1000, 1001)
    completion.complete(-1, -1)  # acks=0: no offsets
    assert [f.result() for f in futures] == [
        RecordMetadata("t", 3, -1, 1000),
        RecordMetadata("t", 3, -1, 1001),
    ]
    completion, futures = batch_of(1000)
    completion.complete(0, 0)
    assert futures[0].result() == RecordMetadata("t", 3, 0, -1)


def test_failure_is_raised_by_every_record_and_only_the_first_outcome_counts() -> None:
    completion, futures = batch_of(1, 2, 3)
    error = ClientClosedError("closed")
    assert completion.fail(error)
    assert not completion.fail(ClientClosedError("again"))
    assert not completion.complete(0, -1)
    for future in futures:
        assert future.done()
        assert future.exception() is error
        assert future.exception(0) is error
        with pytest.raises(ClientClosedError, match="closed"):
            future.result()
    assert "failed" in repr(futures[0])


def test_result_waits_for_completion_from_another_thread() -> None:
    completion, futures = batch_of(1000, 1001)
    thread = later(lambda: completion.complete(10, -1))
    try:
        assert futures[1].result(5) == RecordMetadata("t", 3, 11, 1001)
        assert futures[0].result(0).offset == 10
    finally:
        thread.join()
    completion, futures = batch_of(1000)
    thread = later(lambda: completion.fail(ClientClosedError("closed")))
    try:
        assert isinstance(futures[0].exception(5), ClientClosedError)
    finally:
        thread.join()


def test_callbacks_run_once_in_the_completing_thread_after_it_is_done() -> None:
    completion, futures = batch_of(1000, 1001)
    seen: list[tuple[SendFuture, bool, RecordMetadata, threading.Thread]] = []

    def callback(f: SendFuture) -> None:
        seen.append((f, f.done(), f.result(0), threading.current_thread()))

    futures[0].add_done_callback(callback)
    futures[1].add_done_callback(callback)
    futures[1].add_done_callback(callback)
    assert seen == []
    thread = later(lambda: completion.complete(0, -1))
    thread.join()
    assert [(f, done, meta.offset) for f, done, meta, _ in seen] == [
        (futures[0], True, 0),
        (futures[1], True, 1),
        (futures[1], True, 1),
    ]
    assert all(t is thread for *_, t in seen)
    completion.complete(0, -1)  # already done: no second call
    assert len(seen) == 3


def test_a_callback_added_when_done_runs_at_once_in_the_caller() -> None:
    completion, (future,) = batch_of(1000)
    completion.complete(5, -1)
    seen: list[tuple[SendFuture, threading.Thread]] = []
    future.add_done_callback(lambda f: seen.append((f, threading.current_thread())))
    assert seen == [(future, threading.current_thread())]


def test_a_failing_callback_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    completion, (future,) = batch_of(1000)
    seen: list[SendFuture] = []

    def bad(f: SendFuture) -> None:
        raise ValueError("boom")

    future.add_done_callback(bad)
    future.add_done_callback(seen.append)
    completion.fail(ClientClosedError("closed"))
    assert seen == [future]
    assert "exception calling callback" in caplog.text
    future.add_done_callback(bad)  # already done: logged, not raised


def test_waiting_on_the_completion() -> None:
    completion, _ = batch_of(1000)
    assert not completion.wait(0)
    assert not completion.wait(0.01)
    thread = later(lambda: completion.complete(0, -1))
    try:
        assert completion.wait(5)
    finally:
        thread.join()
    assert completion.wait(0) and completion.done


def test_concurrent_callbacks_and_completion_call_each_callback_once() -> None:
    for _ in range(50):
        completion, futures = batch_of(*range(1, 201))
        calls = [0] * len(futures)

        def counter(i: int, c: list[int] = calls) -> Callable[[SendFuture], None]:
            def count(_: SendFuture) -> None:
                c[i] += 1

            return count

        def add(fs: list[SendFuture] = futures) -> None:
            for i, f in enumerate(fs):
                f.add_done_callback(counter(i))

        adder = threading.Thread(target=add)
        adder.start()
        completion.complete(0, -1)
        adder.join()
        assert calls == [1] * len(futures)
