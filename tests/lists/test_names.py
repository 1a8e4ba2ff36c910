"""Host name normalisation (case, trailing dot, IDN) and the parents of a name."""

from __future__ import annotations

import pytest

from appliance.lists.names import normalise, parents

LABEL_63 = "a" * 63
NAME_253 = ".".join([LABEL_63, LABEL_63, LABEL_63, "b" * 61])  # 63*3 + 61 + 3 dots = 253
NAME_254 = "c" + NAME_253


def test_lengths_of_the_boundary_names() -> None:
    assert len(NAME_253) == 253
    assert len(NAME_254) == 254


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("instagram.com", "instagram.com"),
        ("WWW.Instagram.COM", "www.instagram.com"),
        ("www.instagram.com.", "www.instagram.com"),
        ("WWW.YouTube.com.", "www.youtube.com"),
        ("  padded.example  ", "padded.example"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example.", "xn--bcher-kva.example"),
        ("bücher。example", "xn--bcher-kva.example"),  # ideographic full stop
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),  # already punycode: unchanged
        ("_dns.resolver.arpa", "_dns.resolver.arpa"),  # service labels keep underscores
        ("a-b.example", "a-b.example"),
        ("123.example", "123.example"),
        ("localhost", "localhost"),  # one label is a name
        (f"{LABEL_63}.example", f"{LABEL_63}.example"),
        (NAME_253, NAME_253),
    ],
)
def test_normalise(given: str, expected: str) -> None:
    assert normalise(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("", id="empty"),
        pytest.param(".", id="only-a-dot"),
        pytest.param("a..b", id="empty-label"),
        pytest.param(".a.com", id="leading-dot"),
        pytest.param(f"{'a' * 64}.example", id="label-64"),
        pytest.param(NAME_254, id="name-254"),
        pytest.param("a b.com", id="space"),
        pytest.param("a\tb.com", id="tab"),
        pytest.param("-a.com", id="leading-hyphen"),
        pytest.param("a.-com", id="leading-hyphen-last-label"),
        pytest.param("a-.com", id="trailing-hyphen"),
        pytest.param("*.a.com", id="wildcard"),
        pytest.param("a.com/path", id="path"),
        pytest.param("a.com:443", id="port"),
        pytest.param("user@a.com", id="at-sign"),
        pytest.param("bü cher.example", id="idn-with-space"),
        pytest.param(f"{'ü' * 70}.example", id="idn-label-too-long"),
    ],
)
def test_normalise_rejects(given: str) -> None:
    assert normalise(given) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.b.c", ["a.b.c", "b.c", "c"]),
        ("www.instagram.com", ["www.instagram.com", "instagram.com", "com"]),
        ("com", ["com"]),
        ("x.y", ["x.y", "y"]),
    ],
)
def test_parents(name: str, expected: list[str]) -> None:
    assert parents(name) == expected


def test_parents_are_on_label_boundaries_only() -> None:
    assert "instagram.com" not in parents("notinstagram.com")
    assert "instagram.com" not in parents("instagram.com.evil.test")
