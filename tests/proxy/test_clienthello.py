"""The ClientHello reader: real hellos, every split, and garbage that must never name a server."""

from __future__ import annotations

import re
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy.proxy.layers.tls import parse_client_hello

from appliance.proxy import clienthello as ch
from tests.proxy import hellos

NAME = "www.instagram.com"
HOST_NAME = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*"
)

TLS13 = hellos.ssl_hello(NAME)
TLS12 = hellos.ssl_hello(NAME, tls13=False)
NO_SNI = hellos.ssl_hello(None)
BROWSER = hellos.browser_hello(NAME)


def feed_all(reader: ch.HelloReader, segments: list[tuple[int, bytes]]) -> ch.Result:
    result: ch.Result = ch.NEED_MORE
    for seq, payload in segments:
        result = reader.feed(seq, payload)
    return result


# -- real hellos ------------------------------------------------------------------------------


@pytest.mark.parametrize("hello", [TLS13, TLS12, BROWSER], ids=["tls13", "tls12", "browser"])
def test_real_hellos_name_their_server(hello: bytes) -> None:
    assert ch.parse(hello) == ch.Sni(NAME)


def test_no_server_name() -> None:
    assert ch.parse(NO_SNI) == ch.NoSni()


def test_browser_hello_spans_two_segments_with_the_name_in_the_second() -> None:
    assert len(BROWSER) > hellos.MSS
    assert NAME.encode() not in BROWSER[: hellos.MSS]
    reader = ch.HelloReader()
    assert reader.feed(1000, BROWSER[: hellos.MSS]) == ch.NEED_MORE
    assert reader.feed(1000 + hellos.MSS, BROWSER[hellos.MSS :]) == ch.Sni(NAME)
    # The second segment first (reordered on the way), with the start sequence known.
    reader = ch.HelloReader(start_seq=1000)
    assert reader.feed(1000 + hellos.MSS, BROWSER[hellos.MSS :]) == ch.NEED_MORE
    assert reader.feed(1000, BROWSER[: hellos.MSS]) == ch.Sni(NAME)
    # A first-segment-only parser cannot know: ours says so instead of guessing.
    assert ch.parse(BROWSER[: hellos.MSS]) == ch.NEED_MORE


def test_ech_extension_is_reported() -> None:
    assert ch.parse(hellos.browser_hello("cloudflare-ech.com", ech=True)) == ch.Sni(
        "cloudflare-ech.com", ech=True
    )


def test_hello_fragmented_over_a_few_records() -> None:
    head, extensions = hellos.split_hello(TLS13)
    for size in (100, 300):
        assert ch.parse(hellos.build(head, extensions, record_size=size)) == ch.Sni(NAME)


def test_hello_shredded_into_many_records_is_blocked() -> None:
    """Record fragmentation is a known trick to slip a name past SNI filters: fail closed."""
    head, extensions = hellos.split_hello(TLS13)
    for size in (1, 7, 50):
        assert ch.parse(hellos.build(head, extensions, record_size=size)) == ch.Malformed(
            f"ClientHello in more than {ch.MAX_RECORDS} records"
        )


def test_hello_without_extensions_has_no_name() -> None:
    head, _ = hellos.split_hello(TLS12)
    assert ch.parse(hellos.build(head, None)) == ch.NoSni()


def test_name_is_lower_cased_and_loses_a_trailing_dot() -> None:
    head, extensions = hellos.split_hello(TLS13)
    swapped = [
        (k, hellos.server_name_ext(b"WWW.Example.ORG.") if k == 0 else v) for k, v in extensions
    ]
    assert ch.parse(hellos.build(head, swapped)) == ch.Sni("www.example.org")


def test_bytes_after_the_last_record_are_ignored() -> None:
    change_cipher_spec = b"\x14\x03\x03\x00\x01\x01"
    assert ch.parse(TLS13 + change_cipher_spec) == ch.Sni(NAME)


# -- fail closed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"GET / HTTP/1.1\r\nHost: instagram.com\r\n\r\n", ch.NotTls),
        (b"SSH-2.0-OpenSSH_9.6\r\n", ch.NotTls),
        (b"\x16\x02\x00", ch.NotTls),
        (b"\x16\x03\x01\x00\x00", ch.Malformed),  # empty record
        (b"\x16\x03\x01\x40\x01", ch.Malformed),  # record over 16 KiB
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x46", ch.Malformed),  # a ServerHello
        (b"\x16\x03\x01\x00\x04\x01\x01\x00\x00", ch.Malformed),  # hello over 16 KiB
        (b"\x17\x03\x03\x00\x10" + bytes(16), ch.NotTls),  # application data
    ],
)
def test_not_a_client_hello(stream: bytes, expected: type[ch.Result]) -> None:
    assert isinstance(ch.parse(stream), expected)


def test_every_truncation_needs_more() -> None:
    for hello in (TLS13, BROWSER):
        for end in range(len(hello)):
            assert ch.parse(hello[:end]) == ch.NEED_MORE, end


def test_two_host_names_or_a_bad_name_are_malformed() -> None:
    head, extensions = hellos.split_hello(TLS13)
    entry = b"\x00\x00\x07example"
    twice = struct.pack("!H", 2 * len(entry)) + 2 * entry
    for bad in (twice, hellos.server_name_ext(b"exa mple.org"), hellos.server_name_ext(b"")):
        swapped = [(k, bad if k == 0 else v) for k, v in extensions]
        assert isinstance(ch.parse(hellos.build(head, swapped)), ch.Malformed)
    duplicated = [*extensions, (0, hellos.server_name_ext(b"example.org"))]
    assert isinstance(ch.parse(hellos.build(head, duplicated)), ch.Malformed)


def test_data_after_the_hello_inside_its_record_is_malformed() -> None:
    record = bytearray(TLS13 + b"\x00")
    struct.pack_into("!H", record, 3, len(TLS13) - 5 + 1)
    assert isinstance(ch.parse(bytes(record)), ch.Malformed)


def test_retransmission_with_other_bytes_is_malformed() -> None:
    reader = ch.HelloReader()
    reader.feed(0, BROWSER[:1000])
    forged = bytearray(BROWSER[500:])
    forged[123] ^= 0xFF  # a byte we already have, sent again as something else
    assert isinstance(reader.feed(500, bytes(forged)), ch.Malformed)
    # and stays so
    assert isinstance(reader.feed(1000, BROWSER[1000:]), ch.Malformed)


def test_segment_bounds() -> None:
    reader = ch.HelloReader(start_seq=0, max_segments=3)
    for i in range(3):
        assert reader.feed(2000 + i, b"x") == ch.NEED_MORE
    assert isinstance(reader.feed(0, BROWSER[:10]), ch.Malformed)
    reader = ch.HelloReader(start_seq=0)
    assert isinstance(reader.feed(ch.MAX_STREAM, b"x"), ch.Malformed)
    reader = ch.HelloReader(start_seq=100)
    assert isinstance(reader.feed(50, BROWSER), ch.Malformed)  # before the stream's start


def test_empty_segments_are_ignored() -> None:
    reader = ch.HelloReader()
    assert reader.feed(5, b"") == ch.NEED_MORE
    assert feed_all(reader, [(5, TLS13[:100]), (105, b""), (105, TLS13[100:])]) == ch.Sni(NAME)


def test_sequence_numbers_wrap() -> None:
    start = (1 << 32) - 700
    reader = ch.HelloReader(start_seq=start)
    second = (start + hellos.MSS) % (1 << 32)
    assert reader.feed(second, BROWSER[hellos.MSS :]) == ch.NEED_MORE
    assert reader.feed(start, BROWSER[: hellos.MSS]) == ch.Sni(NAME)


def test_every_two_way_split_gives_the_same_name() -> None:
    for hello in (TLS13, BROWSER):
        for cut in range(1, len(hello)):
            in_order = ch.HelloReader()
            assert feed_all(in_order, [(7, hello[:cut]), (7 + cut, hello[cut:])]) == ch.Sni(NAME)
            reordered = ch.HelloReader(start_seq=7)
            assert feed_all(reordered, [(7 + cut, hello[cut:]), (7, hello[:cut])]) == ch.Sni(
                NAME
            ), cut


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    hello=st.sampled_from([TLS13, TLS12, BROWSER]),
    cuts=st.lists(st.integers(min_value=1, max_value=2400), min_size=2, max_size=2),
    order=st.permutations([0, 1, 2]),
    start=st.integers(min_value=0, max_value=(1 << 32) - 1),
    overlap=st.integers(min_value=0, max_value=40),
)
def test_three_way_splits_in_any_order_give_the_same_name(
    hello: bytes, cuts: list[int], order: list[int], start: int, overlap: int
) -> None:
    a, b = sorted(min(c, len(hello) - 1) for c in cuts)
    bounds = [(0, a), (a, b), (b, len(hello))]
    # Segments may overlap their predecessor (a retransmission with other boundaries).
    segments = [(max(0, lo - overlap * (i > 0)), hi) for i, (lo, hi) in enumerate(bounds)]
    reader = ch.HelloReader(start_seq=start)
    result: ch.Result = ch.NEED_MORE
    for i in order:
        lo, hi = segments[i]
        result = reader.feed((start + lo) % (1 << 32), hello[lo:hi])
    assert result == ch.Sni(NAME)


# -- garbage never names a server ---------------------------------------------------------------


@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    result = ch.parse(data)
    assert not isinstance(result, ch.Sni)


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_after_a_record_header(data: bytes) -> None:
    record = b"\x16\x03\x01" + len(data).to_bytes(2) + data
    assert not isinstance(ch.parse(record), ch.Sni)
    handshake = b"\x16\x03\x01" + (len(data) + 4).to_bytes(2) + b"\x01" + len(data).to_bytes(3)
    assert not isinstance(ch.parse(handshake + data), ch.Sni)


@given(st.lists(st.tuples(st.integers(0, (1 << 32) - 1), st.binary(max_size=600)), max_size=40))
def test_arbitrary_segments(segments: list[tuple[int, bytes]]) -> None:
    result = feed_all(ch.HelloReader(), segments)
    assert not isinstance(result, ch.Sni)


@settings(max_examples=500)
@given(
    hello=st.sampled_from([TLS13, TLS12, BROWSER, NO_SNI]),
    edits=st.lists(st.tuples(st.integers(0, 2400), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.integers(0, 2400),
)
def test_mutated_hellos_never_raise_and_name_only_a_real_host_name(
    hello: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    mutated = bytearray(hello)
    for position, value in edits:
        mutated[position % len(mutated)] = value
    stream = bytes(mutated[: max(cut, len(mutated) - cut)])
    result = ch.parse(stream)
    if isinstance(result, ch.Sni):
        assert HOST_NAME.fullmatch(result.name), result
        assert result.name.encode() in stream.lower()
        # mitmproxy's own parser reads the same name (where it reads one at all).
        try:
            theirs = parse_client_hello(stream)
        except ValueError:
            theirs = None
        if theirs is not None and theirs.sni is not None:
            assert theirs.sni.lower() == result.name
