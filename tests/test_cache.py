"""liveclass.cache.RedisCache against a real redis-server: Django's cache contract, one
client per pool, shared by threads."""

from __future__ import annotations

import threading

from liveclass.cache import RedisCache


def test_cache_operations_and_one_client_per_pool(redis_url: str) -> None:
    cache = RedisCache(redis_url, {"KEY_PREFIX": "t"})
    assert cache.get("missing") is None
    cache.set("session", {"user": 7}, 30)
    assert cache.get("session") == {"user": 7}
    assert cache.add("session", "other") is False
    cache.set("n", 1)
    assert cache.incr("n") == 2
    cache.delete("session")
    assert cache.get("session") is None
    client = cache._cache.get_client(write=True)
    assert cache._cache.get_client(write=True) is client
    assert cache._cache.get_client(write=False) is cache._cache.get_client(write=False)


def test_threads_share_the_client(redis_url: str) -> None:
    cache = RedisCache(redis_url, {})
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                cache.set(f"k{n}:{i}", i)
                assert cache.get(f"k{n}:{i}") == i
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and not any(t.is_alive() for t in threads)
