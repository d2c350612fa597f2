"""Dial overrides (``--dial``, ``--metadata-dial``): validation, TOML, and what the broker
hands to the peer transport and to pysyncobj."""

from __future__ import annotations

import pytest

from raftlog.broker.broker import Broker
from raftlog.config import BrokerConfig, InvalidConfigError, PeerAddress, load_broker_config

PEERS = ("1@127.0.0.2:9000", "2@127.0.0.3:9000", "3@127.0.0.4:9000")


def _config(node_id: int, **overrides: object) -> BrokerConfig:
    return load_broker_config(
        None,
        {
            "node_id": node_id,
            "listen": PEERS[node_id - 1].split("@")[1],
            "peers": PEERS,
            "cluster_secret_file": "/nonexistent",
            **overrides,
        },
    )


def test_dial_overrides_from_flags_and_toml() -> None:
    c = _config(3, dial=("1@127.0.0.1:7001", "2@127.0.0.1:7002"),
                metadata_dial=("1@127.0.0.1:7101",))  # fmt: skip
    assert c.dial_address_of(c.member(1)) == ("127.0.0.1", 7001)
    assert c.dial_address_of(c.member(2)) == ("127.0.0.1", 7002)
    assert c.metadata_dial_of(c.member(1)) == "127.0.0.1:7101"
    assert c.metadata_dial_of(c.member(2)) == "127.0.0.3:9001", "no override: real address"
    toml = f"""
id = 3
listen = "127.0.0.4:9000"
peers = {list(PEERS)!r}
cluster_secret_file = "/s"
dial = ["1@127.0.0.1:7001"]
metadata_dial = ["2@127.0.0.1:7102"]
""".replace("'", '"')
    t = load_broker_config(toml)
    assert t.dial == (PeerAddress(1, "127.0.0.1", 7001),)
    assert t.metadata_dial == (PeerAddress(2, "127.0.0.1", 7102),)


@pytest.mark.parametrize(
    ("node_id", "overrides", "words"),
    [
        (3, {"dial": ("3@127.0.0.1:1",)}, "is this broker"),
        (3, {"dial": ("9@127.0.0.1:1",)}, "not a member"),
        (3, {"dial": ("1@127.0.0.1:1", "1@127.0.0.1:2")}, "one override per peer"),
        (3, {"metadata_dial": ("1@127.0.0.1:1", "1@127.0.0.1:2")}, "one override per peer"),
        (3, {"dial": ("x",)}, "ID@HOST:PORT"),
        # broker 1 (127.0.0.2) is the smaller address: pysyncobj never lets it dial 2
        (1, {"metadata_dial": ("2@127.0.0.1:7000",)}, "greater string"),
        # the override must sort below this broker's own address too
        (3, {"metadata_dial": ("1@127.0.0.9:7000",)}, "greater string"),
    ],
)
def test_bad_overrides_say_what_is_wrong(node_id: int, overrides: dict[str, object],
                                         words: str) -> None:  # fmt: skip
    with pytest.raises(InvalidConfigError) as e:
        _config(node_id, **overrides)
    assert words in e.value.message


def test_one_node_cluster_takes_no_overrides() -> None:
    with pytest.raises(InvalidConfigError, match="not a member"):
        load_broker_config(None, {"dial": ("2@127.0.0.1:1",)})


def test_the_broker_hands_pysyncobj_the_override_and_maps_both_forms(tmp_path: object) -> None:
    secret = f"{tmp_path}/secret"
    with open(secret, "w") as f:
        f.write("0123456789abcdef0123456789abcdef")
    c = _config(3, cluster_secret_file=secret, data_dir=str(tmp_path),
                metadata_dial=("1@127.0.0.1:7101", "2@127.0.0.1:7102"))  # fmt: skip
    b = Broker(c)
    assert b._self_metadata == "127.0.0.4:9001"
    assert b._metadata_partners == ("127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.4:9001")
    assert b._metadata_addr == {
        "127.0.0.2:9001": 1,
        "127.0.0.1:7101": 1,
        "127.0.0.3:9001": 2,
        "127.0.0.1:7102": 2,
        "127.0.0.4:9001": 3,
    }
