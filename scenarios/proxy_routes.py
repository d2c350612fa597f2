"""The fault proxy's routes: which port each link listens on and where it forwards to.

A link, named like ``"1->2"`` or ``"client->3"``, is a ``Route`` ``(listen_port,
target_host, target_port, framed)``. The proxy listens on ``HOST`` only and forwards only to
loopback targets: a scenario runs on one host and must never reach beyond it. Routes come
from Python (``make_routes``) or from the routes JSON file of ``python -m
raftlog.scenarios.proxy`` (``load_routes``); both check every route and raise
``ValueError`` on a bad one.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

HOST = "127.0.0.1"
"""The only address the proxy listens on."""
LINK_NAME_MAX = 200


@dataclass(frozen=True, slots=True)
class Route:
    """Where a link listens (``listen_port`` on 127.0.0.1; 0 picks a free port) and where it
    forwards to; ``framed=False`` for traffic that is not raftlog frames."""

    listen_port: int
    target_host: str
    target_port: int
    framed: bool = True


RouteSpec: TypeAlias = Route | tuple[int, str, int] | tuple[int, str, int, bool]


def _check_port(value: object, what: str, *, zero_ok: bool) -> int:
    low = 0 if zero_ok else 1
    if type(value) is not int or not low <= value <= 65535:
        raise ValueError(f"{what} must be an integer port in {low}..65535, got {value!r}")
    return value


def _check_loopback(host: object) -> str:
    if not isinstance(host, str):
        raise ValueError(f"target host must be a string, got {host!r}")
    if host == "localhost":
        return host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"target host {host!r} is not a loopback address (127.0.0.x)")
    return host


def _check_link_name(name: object) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= LINK_NAME_MAX:
        raise ValueError(f"a link name must be 1..{LINK_NAME_MAX} characters, got {name!r}")
    if not name.isprintable() or " " in name:
        raise ValueError(f"a link name must be printable without spaces, got {name!r}")
    return name


def make_route(spec: RouteSpec) -> Route:
    """A checked ``Route`` from a ``Route`` or a ``(listen_port, host, port[, framed])``."""
    if isinstance(spec, Route):
        fields: tuple[object, ...] = dataclasses.astuple(spec)
    elif isinstance(spec, tuple | list) and len(spec) in (3, 4):
        fields = tuple(spec)
    else:
        raise ValueError(f"a route is (listen_port, target_host, target_port[, framed]): {spec!r}")
    framed = fields[3] if len(fields) == 4 else True
    if type(framed) is not bool:
        raise ValueError(f"framed must be true or false, got {framed!r}")
    return Route(
        _check_port(fields[0], "listen_port", zero_ok=True),
        _check_loopback(fields[1]),
        _check_port(fields[2], "target_port", zero_ok=False),
        framed,
    )


def make_routes(routes: Mapping[str, RouteSpec]) -> dict[str, Route]:
    """Checked routes: loopback targets, valid ports, no listen port used twice."""
    checked = {_check_link_name(name): make_route(spec) for name, spec in routes.items()}
    if not checked:
        raise ValueError("no routes given")
    ports = [r.listen_port for r in checked.values() if r.listen_port]
    if len(ports) != len(set(ports)):
        raise ValueError(f"a listen port is used by two routes: {sorted(ports)}")
    return checked


def load_routes(data: object) -> dict[str, Route]:
    """Routes from decoded JSON: ``{"1->2": [listen_port, "127.0.0.1", target_port]}``, a
    fourth item ``framed``, or ``{"listen_port": .., "target_host": .., "target_port": ..,
    "framed": ..}`` per link."""
    if not isinstance(data, dict):
        raise ValueError("routes must be a JSON object {link: route}")
    specs: dict[str, RouteSpec] = {}
    for name, spec in data.items():
        if isinstance(spec, dict):
            unknown = set(spec) - {"listen_port", "target_host", "target_port", "framed"}
            if unknown:
                raise ValueError(f"route {name!r} has unknown keys {sorted(unknown)}")
            try:
                spec = [spec["listen_port"], spec["target_host"], spec["target_port"]] + (
                    [spec["framed"]] if "framed" in spec else []
                )
            except KeyError as e:
                raise ValueError(f"route {name!r} misses {e}") from None
        if not isinstance(spec, list):
            raise ValueError(f"route {name!r} must be a list or an object, got {spec!r}")
        specs[name] = tuple(spec)  # checked by make_route
    return make_routes(specs)
