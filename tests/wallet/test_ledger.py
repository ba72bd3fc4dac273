from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from liveclass.errors import InsufficientTokens, InvalidInput
from liveclass.wallet import services as wallet
from liveclass.wallet.models import AppendOnlyError, EntryKind, LedgerEntry, Wallet


def test_balance_is_the_sum_of_the_ledger(make_user):
    user = make_user()
    assert wallet.balance(user) == 0
    wallet.grant(user, 5, key="a")
    wallet.grant(user, 7, key="b")
    with transaction.atomic():
        wallet.lock(user)
        wallet.debit_locked(user, 3, key="c", kind=EntryKind.ENROLLMENT)
    assert wallet.balance(user) == 9
    assert sorted(e.amount for e in wallet.history(user)) == [-3, 5, 7]
    assert Wallet.objects.get(user=user).balance == sum(e.amount for e in wallet.history(user))


def test_database_refuses_a_negative_balance(make_user):
    user = make_user(tokens=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.filter(user=user).update(balance=-1)
    assert wallet.balance(user) == 2


def test_grant_is_idempotent_per_key(make_user):
    user = make_user()
    first = wallet.grant(user, 5, key="same")
    again = wallet.grant(user, 5, key="same")
    assert first.pk == again.pk
    assert wallet.balance(user) == 5
    with pytest.raises(InvalidInput):
        wallet.grant(user, 6, key="same")


def test_debit_cannot_overdraw_and_leaves_no_row(make_user):
    user = make_user(tokens=2)
    with pytest.raises(InsufficientTokens) as err, transaction.atomic():
        wallet.lock(user)
        wallet.debit_locked(user, 3, key="x", kind=EntryKind.ENROLLMENT)
    assert err.value.extra == {"balance": 2, "price": 3}
    assert wallet.balance(user) == 2
    assert LedgerEntry.objects.filter(user=user).count() == 1


def test_ledger_is_append_only(make_user):
    user = make_user(tokens=4)
    entry = LedgerEntry.objects.get(user=user)
    entry.amount = 400
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    assert wallet.balance(user) == 4


@pytest.mark.parametrize("amount", [0, -1, 1_000_001])
def test_grant_rejects_silly_amounts(make_user, amount):
    with pytest.raises(InvalidInput):
        wallet.grant(make_user(), amount, key="k")


def test_wallet_api_shows_balance_and_history(make_user, api):
    user = make_user(tokens=10)
    body = api(user).get("/api/wallet").json()
    assert body["balance"] == 10
    assert [(h["kind"], h["amount"]) for h in body["history"]] == [("grant", 10)]


def test_wallet_api_needs_sign_in(api):
    response = api(None).get("/api/wallet")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
