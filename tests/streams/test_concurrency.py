"""Money under concurrency: real parallel database connections, one per thread."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import close_old_connections, connection

from liveclass.errors import DomainError
from liveclass.streams import services as streams
from liveclass.streams.models import Enrollment
from liveclass.wallet import services as wallet
from liveclass.wallet.models import LedgerEntry, Wallet

pytestmark = pytest.mark.django_db(transaction=True)


def _race(calls: list[Callable[[], object]]) -> Counter[str]:
    """Start every call at once (a barrier), each on its own connection; count outcomes."""
    barrier = threading.Barrier(len(calls))
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def run(call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=30)
            result = call()
            label = "created" if isinstance(result, tuple) and result[1] else "repeat"
        except DomainError as exc:
            label = type(exc).__name__
        except Exception as exc:  # a crash must show up in the counts, not vanish
            label = f"crash:{type(exc).__name__}:{exc}"
        finally:
            close_old_connections()
            connection.close()
        with lock:
            outcomes[label] += 1

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads), "a racer hung"
    return outcomes


def _balance(user: object) -> int:
    """The wallet's running balance, checked against the sum of its ledger."""
    ledger = sum(LedgerEntry.objects.filter(user=user).values_list("amount", flat=True))
    assert Wallet.objects.get(user=user).balance == ledger == wallet.balance(user)  # type: ignore[misc]
    return ledger


def test_fifty_enrollments_across_ten_streams_with_tokens_for_three(make_user, make_stream):
    user = make_user(tokens=6)
    classes = [make_stream(price=2) for _ in range(10)]
    calls = [lambda s=classes[i % 10]: streams.enroll(user, s.pk) for i in range(50)]
    outcomes = _race(calls)

    assert not [k for k in outcomes if k.startswith("crash")], outcomes
    assert outcomes["created"] == 3, outcomes
    assert _balance(user) == 0
    enrolled = Enrollment.objects.filter(user=user)
    debits = LedgerEntry.objects.filter(user=user, kind="enrollment")
    assert enrolled.count() == 3 == debits.count()
    assert {f"stream:{e.stream_id}" for e in enrolled} == set(debits.values_list("reference", flat=True))
    # Never below zero at any point: the running sum of the ledger in commit order.
    running = 0
    for amount in LedgerEntry.objects.filter(user=user).order_by("id").values_list("amount", flat=True):
        running += amount
        assert running >= 0


def test_twenty_concurrent_enrolls_in_one_stream_charge_once(make_user, make_stream):
    user = make_user(tokens=10)
    stream = make_stream(price=3)
    outcomes = _race([lambda: streams.enroll(user, stream.pk) for _ in range(20)])
    assert outcomes == Counter({"created": 1, "repeat": 19}), outcomes
    assert _balance(user) == 7
    assert LedgerEntry.objects.filter(user=user, kind="enrollment").count() == 1


def test_last_seat_goes_to_exactly_one_of_many(make_user, make_stream):
    stream = make_stream(price=1, capacity=1)
    users = [make_user(tokens=1) for _ in range(12)]
    outcomes = _race([lambda u=u: streams.enroll(u, stream.pk) for u in users])
    assert outcomes == Counter({"created": 1, "StreamFull": 11}), outcomes
    assert sum(_balance(u) for u in users) == 11


def test_cancel_racing_enrollments_refunds_everyone_who_got_in(make_user, make_stream, instructor):
    stream = make_stream(price=2)
    users = [make_user(tokens=2) for _ in range(10)]
    calls: list[Callable[[], object]] = [lambda u=u: streams.enroll(u, stream.pk) for u in users]
    calls.append(lambda: streams.cancel_stream(instructor, stream.pk))
    outcomes = _race(calls)
    assert not [k for k in outcomes if k.startswith("crash")], outcomes
    # Whoever enrolled before the cancel was refunded; whoever came after was refused.
    assert all(_balance(u) == 2 for u in users)
    assert not Enrollment.objects.filter(stream=stream, status="active").exists()
