"""The egress rule, pure: which addresses outgoing requests may connect to."""

import pytest

from backend.notify.egress import EgressPolicy, EgressRefused, check_http_url, parse_networks


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.2.10", "::1", "fe80::1",
    "fd00::1", "ff02::1", "::", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
])
def test_non_public_addresses_are_refused(address):
    reason = EgressPolicy().refusal(address)
    assert reason is not None and "not" in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111",
                                     "::ffff:93.184.216.34"])
def test_public_addresses_pass(address):
    assert EgressPolicy().refusal(address) is None


def test_an_allowed_range_opens_only_itself():
    policy = EgressPolicy.from_config(["127.0.0.0/8", "fd00::/8"])
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::ffff:127.0.0.2") is None
    assert policy.refusal("fd12::3") is None
    assert "private" in policy.refusal("10.0.0.1")
    assert "loopback" in policy.refusal("::1")


def test_a_bad_range_in_configuration_is_named():
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        parse_networks(["10.0.0.0/33"])


def test_filter_keeps_only_allowed_addresses_and_refuses_when_none():
    policy = EgressPolicy()
    assert policy.filter("h", ["127.0.0.1", "93.184.216.34"]) == ["93.184.216.34"]
    with pytest.raises(EgressRefused, match="h: 127.0.0.1 is a loopback"):
        policy.filter("h", ["127.0.0.1", "10.0.0.1"])


@pytest.mark.parametrize("url, message", [
    ("ftp://example.com/x", "scheme"), ("http:///x", "no host"),
    ("http://user:pw@example.com/", "credentials"), ("http://[::1/", "valid"),
    ("http://example.com:99999/", "valid"), ("", "URL of"),
    ("http://e.com/" + "a" * 3000, "URL of"),
    ("http://169.254.169.254/latest", "link-local"), ("https://[::1]:8443/", "loopback"),
])
def test_bad_destination_urls_are_refused_with_a_reason(url, message):
    with pytest.raises(EgressRefused, match=message):
        check_http_url(url, EgressPolicy())


def test_a_named_host_is_left_for_connect_time():
    assert check_http_url("https://hooks.example.com/x", EgressPolicy())


@pytest.mark.parametrize("table, message", [
    ({"colour": 1}, "unknown keys"), ({"allow_networks": "10.0.0.0/8"}, "a list"),
    ({"allow_networks": ["nonsense"]}, "'nonsense'"), ({"poll_s": 0}, "poll_s"),
    ({"retry_min_s": 10_000}, "retry_min_s"), ({"smtp": {"port": 0, "host": "h"}}, "port"),
    ({"smtp": {"hots": "h"}}, "unknown keys"), ({"report": {"every": "hourly"}}, "daily"),
    ({"report": {"every": "daily", "to": ["x@y.com"]}}, "needs \\[notify.smtp\\]"),
    ({"report": {"to": ["not-an-address"]}}, "e-mail"),
])
def test_a_bad_notify_table_stops_the_backend_naming_the_key(table, message):
    from backend.notify.settings import NotifySettings

    with pytest.raises(ValueError, match=message):
        NotifySettings.parse(table)
