"""``raftlog node start`` settings: defaults, TOML, flags over the file, and clear errors."""

from __future__ import annotations

import pytest

from raftlog.config import BrokerConfig, InvalidConfigError, PeerAddress, load_broker_config


def test_no_flags_is_a_one_node_cluster_in_raftlog_data() -> None:
    c = load_broker_config()
    assert c.data_dir == "./raftlog-data" and c.node_id == 1
    assert c.listen_address == ("127.0.0.1", 9092)
    assert [str(m) for m in c.members] == ["1@127.0.0.1:9092"]
    assert c.metadata_listen == "127.0.0.1:9093" and c.admin_address == ("127.0.0.1", 9094)


def test_file_then_flags() -> None:
    toml = """
id = 2
data_dir = "/var/lib/raftlog"
listen = "0.0.0.0:9200"
advertise = "host2:9200"
peers = ["1@host1:9200", "2@host2:9200", "3@host3:9200"]
cluster_secret_file = "/etc/raftlog/secret"
"""
    c = load_broker_config(toml, {"data_dir": "/data", "peers": (), "metadata_port": None})
    assert c.node_id == 2 and c.data_dir == "/data"
    assert c.advertised == ("host2", 9200)
    assert c.metadata_listen == "host2:9201", "never bind the metadata port to a wildcard"
    assert [c.metadata_address_of(p) for p in c.members] == [
        "host1:9201",
        "host2:9201",
        "host3:9201",
    ]


@pytest.mark.parametrize(
    ("toml", "overrides", "words"),
    [
        (None, {"listen": "0.0.0.0:9092"}, "--advertise"),
        (None, {"peers": ("1@a:1", "2@b:1")}, "--cluster-secret-file"),
        (None, {"peers": ("2@a:1", "3@b:1"), "cluster_secret_file": "s"}, "include this node"),
        (None, {"peers": ("1@a:1", "1@b:1"), "cluster_secret_file": "s"}, "unique"),
        (None, {"listen": "nohost"}, "HOST:PORT"),
        (None, {"listen": "h:70000"}, "1-65535"),
        ("id = 1\nbogus = 2\n", None, "unknown config keys"),
        ("id = 'one'\n", None, "whole number"),
        ("id = [\n", None, "not valid TOML"),
        ("peers = ['x']\n", None, "ID@HOST:PORT"),
    ],
)
def test_bad_settings_say_what_to_do(toml: str | None, overrides: dict[str, object] | None,
                                     words: str) -> None:  # fmt: skip
    with pytest.raises(InvalidConfigError) as e:
        load_broker_config(toml, overrides)
    assert words in e.value.message


def test_peer_address_round_trip() -> None:
    p = PeerAddress.parse("7@[::1]:9092")
    assert (p.node_id, p.host, p.port) == (7, "::1", 9092)
    assert BrokerConfig(node_id=7, peers=(p,)).members == (p,)
