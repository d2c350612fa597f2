"""The broker's admin HTTP port (native port + 2): health and metrics for people and tools.

- ``GET /health``: ``200`` with a JSON object (broker id, whether the metadata is caught up,
  the metadata leader, partitions held and led) when the broker serves; ``503`` with the
  same object while its metadata has not caught up yet.
- ``GET /metrics``: Prometheus text format: replicas held and led, the high watermark and
  log end of every local replica, open connections.

A deliberately small HTTP/1.0-style server: one request per connection, the request head
capped at 8 KiB and read within 5 s, only GET, nothing is parsed beyond the request line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import trio

log = logging.getLogger("raftlog.admin_http")

HEAD_BYTES_MAX = 8192
READ_TIMEOUT_S = 5.0


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class AdminHttp:
    """``health()`` returns (ok, document); ``metrics()`` returns the Prometheus text."""

    def __init__(
        self, health: Callable[[], tuple[bool, dict[str, Any]]], metrics: Callable[[], str]
    ) -> None:
        self.health = health
        self.metrics = metrics

    async def handle(self, stream: trio.SocketStream) -> None:
        # a client may reset the connection at any point: that ends this request only (an
        # exception leaving here would reach trio.serve_listeners and stop the broker)
        try:
            async with stream:
                head = b""
                with trio.move_on_after(READ_TIMEOUT_S):
                    while b"\r\n\r\n" not in head and b"\n\n" not in head:
                        chunk = await stream.receive_some(4096)
                        if not chunk:
                            break
                        head += chunk
                        if len(head) > HEAD_BYTES_MAX:
                            break
                line = head.split(b"\n", 1)[0].decode("latin-1").strip().split(" ")
                await stream.send_all(self._answer(line))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:  # a bug behind /health or /metrics: logged, never fatal
            log.exception("event=admin_http_failed")

    def _answer(self, line: list[str]) -> bytes:
        if len(line) < 2 or line[0] != "GET":
            return _response("405 Method Not Allowed", "text/plain", b"only GET is served\n")
        path = line[1].split("?", 1)[0]
        if path == "/health":
            ok, doc = self.health()
            body = json.dumps(doc, sort_keys=True).encode() + b"\n"
            return _response(
                "200 OK" if ok else "503 Service Unavailable", "application/json", body
            )
        if path == "/metrics":
            return _response("200 OK", "text/plain; version=0.0.4", self.metrics().encode())
        return _response("404 Not Found", "text/plain", b"try /health or /metrics\n")
