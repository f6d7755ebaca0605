"""URLs with credentials: what outputs show, what requests send (loadkit.urls)."""

from __future__ import annotations

import base64

import pytest

from loadkit.urls import authority, base_url, basic_authorization, doubled_v1, without_credentials


@pytest.mark.parametrize(("url", "shown"), [
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("https://gpu-host/v1", "https://gpu-host/v1"),
    ("http://user:pw@gpu-host:9400", "http://gpu-host:9400"),
    ("https://u:p@gpu-host/metrics", "https://gpu-host/metrics"),
    ("http://token@h", "http://h"),
    ("http://u:p@ss@host:1/x", "http://host:1/x"),  # a raw `@` in the password
    ("http://u:p%40ss@[::1]:8000/v1", "http://[::1]:8000/v1"),
    ("http://User:PW@Gpu-Host:9400/Path", "http://Gpu-Host:9400/Path"),  # as written
    ("http://h/metrics?api_key=s3cret", "http://h/metrics?api_key=***"),
    ("http://h/m?match[]=up&token=s3cret", "http://h/m?match[]=***&token=***"),
    ("http://h/m?s3cret", "http://h/m?***"),  # a bare item is masked whole
    ("http://h/m?", "http://h/m"),
    ("http://h/v1#access_token=s3cret", "http://h/v1"),
    ("http://user:pa/ss@host", "http://***"),  # raw `/` in a password: port `pa`
    ("http://user:p?ss@host", "http://***"),
    ("http://[::1/x", "http://***"),  # does not parse
])
def test_without_credentials(url: str, shown: str) -> None:
    assert without_credentials(url) == shown
    assert without_credentials(shown) == shown  # idempotent


def test_no_secret_survives() -> None:
    for url in ("http://alice:s3cret@h:1/p?key=s3cret#s3cret", "http://s3cret@h",
                "http://a:s3cret@b@h", "http://a:s3/cret@h", "https://h/?s3cret"):
        assert "s3cret" not in without_credentials(url), url
        assert "s3" not in without_credentials(url), url


def test_authority_is_the_host_header() -> None:
    assert authority("http://user:pw@gpu-host:9400/v1") == "gpu-host:9400"
    assert authority("https://[::1]:8443") == "[::1]:8443"
    assert authority("http://h") == "h"


def test_basic_authorization_from_the_url() -> None:
    assert basic_authorization("http://h:8000") is None
    value = basic_authorization("http://al%40ice:p%3Ass@h:8000")
    assert value is not None and value.startswith("Basic ")
    assert base64.b64decode(value.removeprefix("Basic ")) == b"al@ice:p:ss"
    token = basic_authorization("http://tok@h")
    assert token is not None and base64.b64decode(token[6:]) == b"tok:"


def test_a_target_is_a_base_url_without_query_or_fragment() -> None:
    for url in ("http://h:1?x=1", "http://h:1/#a", "http://h:1?", "http://h/v1?api-version=2"):
        with pytest.raises(ValueError, match="without a query"):
            base_url(url)
    assert base_url("http://u:p%3F@h:1/gw/") == "http://u:p%3F@h:1/gw"  # an encoded ? is a password's


def test_a_doubled_v1_is_named_only_where_the_target_ends_in_v1() -> None:
    assert "drop it (--target http://h:8000)" in doubled_v1("http://h:8000/v1/")
    assert doubled_v1("http://h:8000") == doubled_v1("http://h:8000/v1beta") == ""
