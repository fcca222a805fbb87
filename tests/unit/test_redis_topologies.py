"""ORDERS_REDIS_URL's scheme chooses the topology: one server, Sentinel, or a cluster; every
bad form is refused naming the variable and the expected shape, never echoing a password."""

from __future__ import annotations

import pytest

from service.config import Settings, SettingsError


def _url(raw: str, **env: str) -> Settings:
    return Settings.from_env({"ORDERS_REDIS_URL": raw, **env})


def test_one_server_urls_stay_as_they_were() -> None:
    url = _url("rediss://app:pw@cache.example:6380/2").redis_url
    assert (url.topology, url.hosts, url.tls, url.username, url.password) == (
        "standalone",
        (("cache.example", 6380),),
        True,
        "app",
        "pw",
    )
    assert url.url == "rediss://app:pw@cache.example:6380/2"


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database() -> None:
    url = _url("redis+sentinel://app:s3cr%2Ft@s1:26379,s2:26380,[::1]/mymaster/3").redis_url
    assert url.topology == "sentinel"
    assert url.hosts == (("s1", 26379), ("s2", 26380), ("::1", 26379))
    assert (url.master_name, url.db, url.username, url.password) == ("mymaster", 3, "app", "s3cr/t")
    assert not url.tls
    shown = url.redacted()
    assert shown == "redis+sentinel://app:***@s1:26379,s2:26380,[::1]:26379/mymaster/3"
    assert "s3cr" not in repr(url)


def test_a_sentinel_url_without_a_database_uses_zero_and_tls_is_kept() -> None:
    url = _url("rediss+sentinel://s1:5000/cache?ssl_ca_certs=/etc/ca.pem").redis_url
    assert (url.master_name, url.db, url.tls) == ("cache", 0, True)
    assert url.options == (("ssl_ca_certs", "/etc/ca.pem"),)


def test_a_cluster_url_lists_its_seed_nodes() -> None:
    url = _url("redis+cluster://:pw@n1:7000,n2:7001,n3").redis_url
    assert url.topology == "cluster"
    assert url.hosts == (("n1", 7000), ("n2", 7001), ("n3", 6379))
    assert url.password == "pw"
    assert url.redacted() == "redis+cluster://:***@n1:7000,n2:7001,n3:6379"
    assert _url("rediss+cluster://n1:7000/").redis_url.tls


def test_the_sentinels_own_password_is_a_separate_secret() -> None:
    settings = _url(
        "redis+sentinel://:data@s1:26379/m",
        ORDERS_REDIS_SENTINEL_PASSWORD="sentinelpw",
        ORDERS_REDIS_PASSWORD="override",
    )
    url = settings.redis_url
    assert (url.password, url.sentinel_password, url.topology) == (
        "override",
        "sentinelpw",
        "sentinel",
    )
    assert "sentinelpw" in settings.secret_values()
    shown = repr(settings) + str(settings.redacted())
    assert "sentinelpw" not in shown
    assert "override" not in shown


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("redis+sentinel://s1:26379", "master"),
        ("redis+sentinel://s1:26379/", "master"),
        ("redis+sentinel://s1:26379/m/x", "number"),
        ("redis+sentinel://s1:26379/m/1/2", "master"),
        ("redis+sentinel://s1:99999/m", "out of range"),
        ("redis+sentinel://s1:port/m", "host and port"),
        ("redis+sentinel://s1:1,,s2:2/m", "host and port"),
        ("redis+sentinel:///m", "host and port"),
        ("redis+cluster://n1:7000/3", "database 0"),
        ("redis+cluster://n1:7000/a/b", "database 0"),
        ("redis+cluster://n1:7000?retries=3", "unknown query parameter"),
        ("redis+cluster://n1:7000?password=hunter2", "'\\*\\*\\*'"),
        ("redis+sentinel://s1:1/m#frag", "fragment"),
        ("redis+shard://n1:7000", "redis\\+sentinel://"),
    ],
)
def test_bad_forms_are_refused_with_the_shape_expected(raw: str, says: str) -> None:
    with pytest.raises(SettingsError, match="ORDERS_REDIS_URL") as refused:
        _url(raw)
    assert refused.match(says)
    assert "hunter2" not in str(refused.value)


def test_a_password_with_reserved_characters_is_read_whole_in_a_sentinel_url() -> None:
    url = _url("redis+sentinel://app:p/a#s?s@w@s1:26379,s2:26379/m").redis_url
    assert url.password == "p/a#s?s@w"
    assert url.hosts == (("s1", 26379), ("s2", 26379))
    assert "p/a" not in url.redacted()


def test_the_seam_builds_a_sentinel_client_with_the_same_no_retry_policy() -> None:
    """No network: the client is built, not connected (redis-py connects on first use)."""
    from service.cache import topology

    settings = _url(
        "redis+sentinel://app:data@s1:26379,s2:26380/cache/2",
        ORDERS_REDIS_SENTINEL_PASSWORD="sentinelpw",
    )
    client = topology.client(settings.redis_url, 0.25)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.25, 0.25)
    assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (2, "app", "data")
    assert kwargs["retry"].get_retries() == 0
    sentinels = client.connection_pool.sentinel_manager.sentinels  # type: ignore[attr-defined]
    asked = [s.connection_pool.connection_kwargs for s in sentinels]
    assert [(a["host"], a["port"]) for a in asked] == [("s1", 26379), ("s2", 26380)]
    assert {(a["username"], a["password"], a["socket_timeout"]) for a in asked} == {
        ("app", "sentinelpw", 0.25)
    }
    standalone = topology.client(_url("redis://:pw@cache:6380/1").redis_url, 0.25)
    assert standalone.connection_pool.connection_kwargs["retry"].get_retries() == 0
