"""Request target -> path and query; request head -> ASGI ``http`` scope (spec 2.5)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tricorn._asgi.scope import ConnectionInfo, build_http_scope, decode_path, split_target
from tricorn._protocol.events import RequestReceived

SETTINGS = settings(max_examples=200, deadline=None)

# RFC 3986 3.3: pchar = unreserved / pct-encoded / sub-delims / ":" / "@"
PCHAR = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@"
# RFC 3986 3.4: query = *( pchar / "/" / "?" ); '#' starts a fragment.
QUERY_CHARS = PCHAR + b"/?%"

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
raw_paths = st.lists(st.binary(max_size=8).map(quote_from_bytes), max_size=5).map(
    lambda segments: ("/" + "/".join(segments)).encode("ascii")
)
queries = st.lists(st.sampled_from([bytes([b]) for b in QUERY_CHARS]), max_size=30).map(b"".join)
authorities = st.from_regex(r"[a-z0-9.-]{1,20}(:[0-9]{1,5})?", fullmatch=True)


@SETTINGS
@given(segments=st.lists(texts, max_size=6))
def test_decode_path_inverts_percent_encoded_utf8_segments(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    raw = ("/" + "/".join(quote(segment, safe="") for segment in segments)).encode("ascii")
    assert decode_path(raw) == path


def test_decode_path_replaces_invalid_utf8_with_the_replacement_character() -> None:
    assert decode_path(b"/caf%E9") == "/caf\N{REPLACEMENT CHARACTER}"


@SETTINGS
@given(path=raw_paths, query=queries)
def test_everything_after_the_first_question_mark_is_the_query(path: bytes, query: bytes) -> None:
    assert split_target(path + b"?" + query) == (path, query)


@SETTINGS
@given(path=raw_paths)
def test_target_without_question_mark_has_an_empty_query(path: bytes) -> None:
    assert split_target(path) == (path, b"")


@SETTINGS
@given(
    scheme=st.sampled_from([b"http", b"https", b"HTTP"]),
    authority=authorities,
    path=raw_paths,
    query=st.none() | queries,
)
def test_absolute_form_gives_the_same_path_and_query_as_origin_form(
    scheme: bytes, authority: str, path: bytes, query: bytes | None
) -> None:
    origin = path if query is None else path + b"?" + query
    absolute = scheme + b"://" + authority.encode("ascii") + origin
    assert split_target(absolute) == split_target(origin)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"http://example.com", (b"/", b"")),
        (b"http://example.com?a=1", (b"/", b"a=1")),
        (b"*", (b"*", b"")),
        (b"/redirect?to=http://other/x", (b"/redirect", b"to=http://other/x")),
    ],
)
def test_split_target_edge_forms(target: bytes, expected: tuple[bytes, bytes]) -> None:
    assert split_target(target) == expected


def test_a_fragment_is_never_part_of_the_query_string() -> None:
    # split_target states: "if one [fragment] is [sent], it is not part of the
    # query string". In "/a#f?q" the "?q" belongs to the fragment (RFC 3986 3.5).
    assert split_target(b"/a?x#f") == (b"/a", b"x")
    assert split_target(b"/a#f?q") == (b"/a", b"")


# -- build_http_scope ---------------------------------------------------------

methods = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10)
header_lists = st.lists(
    st.tuples(st.binary(min_size=1, max_size=10), st.binary(max_size=20)), max_size=6
)
root_paths = st.sampled_from(["", "/api", "/mount/point"])


@SETTINGS
@given(
    method=methods,
    path=raw_paths,
    query=st.none() | queries,
    headers=header_lists,
    root_path=root_paths,
    http_version=st.sampled_from(["1.0", "1.1"]),
    scheme=st.sampled_from(["http", "https"]),
)
def test_build_http_scope_has_the_spec_keys_with_the_right_types(
    method: str,
    path: bytes,
    query: bytes | None,
    headers: list[tuple[bytes, bytes]],
    root_path: str,
    http_version: str,
    scheme: str,
) -> None:
    target = path if query is None else path + b"?" + query
    request = RequestReceived(
        stream_id=1,
        method=method.encode("ascii"),
        target=target,
        http_version=http_version,
        headers=tuple(headers),
    )
    info = ConnectionInfo(client=("10.0.0.1", 5555), server=("10.0.0.2", 80), scheme=scheme)
    scope = build_http_scope(request, info, root_path=root_path, state=None)

    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == http_version
    assert scope["method"] == method.upper()
    assert isinstance(scope["method"], str)
    assert scope["scheme"] == scheme
    assert isinstance(scope["path"], str)
    assert scope["path"] == root_path + decode_path(path)
    assert scope["raw_path"] == path
    assert isinstance(scope["raw_path"], bytes)
    assert scope["query_string"] == (query or b"")
    assert isinstance(scope["query_string"], bytes)
    assert scope["root_path"] == root_path
    assert isinstance(scope["headers"], list)
    assert scope["headers"] == headers
    assert all(
        isinstance(name, bytes) and isinstance(value, bytes) for name, value in scope["headers"]
    )
    assert scope["client"] == ("10.0.0.1", 5555)
    assert scope["server"] == ("10.0.0.2", 80)
    assert "state" not in scope


def _request(target: bytes = b"/") -> RequestReceived:
    return RequestReceived(
        stream_id=1, method=b"GET", target=target, http_version="1.1", headers=()
    )


def test_root_path_is_prepended_to_path_but_not_to_raw_path() -> None:
    scope = build_http_scope(
        _request(b"/users/caf%C3%A9?x=1"),
        ConnectionInfo(client=None, server=None),
        root_path="/api",
        state=None,
    )
    assert scope["path"] == "/api/users/café"
    assert scope["raw_path"] == b"/users/caf%C3%A9"
    assert scope["root_path"] == "/api"
    assert scope["query_string"] == b"x=1"


def test_unix_socket_connection_has_no_client_and_no_server_port() -> None:
    info = ConnectionInfo(client=None, server=("/tmp/tricorn.sock", None))
    scope = build_http_scope(_request(), info, root_path="", state=None)
    assert scope["client"] is None
    assert scope["server"] == ("/tmp/tricorn.sock", None)


def test_state_is_a_shallow_copy_of_the_lifespan_state() -> None:
    shared: list[str] = []
    state: dict[str, Any] = {"db": "pool", "seen": shared}
    scope = build_http_scope(
        _request(), ConnectionInfo(client=None, server=None), root_path="", state=state
    )
    assert scope["state"] == state
    assert scope["state"] is not state

    scope["state"]["per_request"] = 1
    del scope["state"]["db"]
    assert state == {"db": "pool", "seen": shared}  # the original dict is untouched

    scope["state"]["seen"].append("request 1")
    assert state["seen"] == ["request 1"]  # the values inside are shared


def test_each_scope_gets_its_own_state_copy() -> None:
    state: dict[str, Any] = {"n": 0}
    info = ConnectionInfo(client=None, server=None)
    first = build_http_scope(_request(), info, root_path="", state=state)
    second = build_http_scope(_request(), info, root_path="", state=state)
    first["state"]["n"] = 1
    assert second["state"] == {"n": 0}


def test_an_app_mutating_scope_asgi_does_not_change_later_scopes() -> None:
    info = ConnectionInfo(client=None, server=None)
    first = build_http_scope(_request(), info, root_path="", state=None)
    first["asgi"]["version"] = "2.0"
    second = build_http_scope(_request(), info, root_path="", state=None)
    assert second["asgi"] == {"version": "3.0", "spec_version": "2.5"}


def test_a_forwarded_host_and_prefix_reach_the_scope() -> None:
    from tricorn._asgi.scope import ConnectionInfo as Info

    info = Info(
        client=("198.51.100.7", 0),
        server=("shop.example", 443),
        scheme="https",
        host=b"shop.example",
        root_path="/store",
    )
    request = RequestReceived(
        stream_id=1,
        method=b"GET",
        target=b"/items?x=1",
        http_version="1.1",
        headers=((b"host", b"10.0.0.5:8000"), (b"accept", b"*/*")),
    )
    scope = build_http_scope(request, info, root_path="/app", state=None)
    assert scope["root_path"] == "/store/app"
    assert scope["path"] == "/store/app/items"
    assert scope["headers"] == [(b"host", b"shop.example"), (b"accept", b"*/*")]
    assert scope["server"] == ("shop.example", 443)
    assert scope["scheme"] == "https"
