"""A metadata-quorum member as a process, for tests that kill and power-fail real nodes.

    python -m raftlog.testing.metadata_node --self 127.0.0.1:7001 \\
        --peers 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 --data DIR \\
        --secret-file F --control 127.0.0.1:8001 [--ledger PATH]

It runs the quorum and the trio bridge exactly as a broker does, plus a control port
speaking one JSON object a line: ``{"cmd": "submit", "command": {...}}`` answers
``{"result": {...}}`` or ``{"error": {"code": n, "message": "..."}}``;
``{"cmd": "status"}`` answers the quorum status; ``{"cmd": "snapshot"}`` the model's
snapshot (to compare members). With ``--ledger`` every file goes through a
``LedgerFileSystem`` so that ``apply_power_loss`` can cut it back after a kill.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from typing import Any

import trio

from raftlog.metadata.bridge import MetadataBridge
from raftlog.metadata.quorum import MetadataQuorum, QuorumConfig, QuorumError
from raftlog.storage.files import FileSystem, LedgerFileSystem, OsFileSystem

LINE_BYTES_MAX = 1 << 20


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


async def _serve_client(
    stream: Any,  # a trio.SocketStream (serve_listeners' type is generic)
    quorum: MetadataQuorum,
    bridge: MetadataBridge,
) -> None:
    buf = b""
    async with stream:
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            buf += chunk
            if len(buf) > LINE_BYTES_MAX:
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                reply = await _handle(json.loads(line), quorum, bridge)
                await stream.send_all(json.dumps(_jsonable(reply)).encode() + b"\n")


async def _handle(req: dict[str, Any], quorum: MetadataQuorum, bridge: MetadataBridge) -> Any:
    cmd = req.get("cmd")
    if cmd == "submit":
        try:
            return {
                "result": await bridge.submit(req["command"], timeout_s=req.get("timeout_s", 5))
            }
        except QuorumError as e:
            return {"error": {"code": int(e.code), "message": e.message}}
    if cmd == "status":
        return quorum.status()
    if cmd == "snapshot":
        image = await bridge.barrier() if req.get("barrier") else bridge.image()
        return {"version": image.version, "snapshot": quorum.model.to_snapshot()}
    return {"error": {"code": 14, "message": f"unknown control command {cmd!r}"}}


async def _main(args: argparse.Namespace, fs: FileSystem) -> None:
    with open(args.secret_file, encoding="utf-8") as f:
        secret = f.read().strip()
    quorum: MetadataQuorum | None = None
    bridge_box: list[MetadataBridge] = []

    def on_image(image: Any) -> None:
        if bridge_box:
            bridge_box[0].on_image(image)

    config = QuorumConfig(
        self_address=args.self_address,
        peers=tuple(args.peers.split(",")),
        data_dir=args.data,
        secret=secret,
        fs=fs,
        compaction_min_entries=args.compaction_entries,
    )
    quorum = MetadataQuorum(config, on_image=on_image)
    bridge = MetadataBridge(quorum)
    bridge_box.append(bridge)
    host, port = args.control.rsplit(":", 1)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bridge.run_commit_folder)
            listeners = await trio.open_tcp_listeners(int(port), host=host)
            print(json.dumps({"event": "ready", "self": args.self_address}), flush=True)
            await trio.serve_listeners(
                lambda s: _serve_client(s, quorum, bridge), listeners, handler_nursery=nursery
            )
    finally:
        quorum.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--self", dest="self_address", required=True)
    ap.add_argument("--peers", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--control", required=True)
    ap.add_argument("--ledger")
    ap.add_argument("--compaction-entries", type=int, default=5000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    fs: FileSystem = LedgerFileSystem(args.ledger) if args.ledger else OsFileSystem()
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(_main, args, fs)


if __name__ == "__main__":
    main()
