"""Wallet operations. Anything that spends runs inside `transaction.atomic()`; a debit is
one conditional UPDATE of the wallet row, which takes the row lock and re-checks the
balance on the locked row, so two debits of one user cannot interleave and overdraw."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import F

from liveclass import clock
from liveclass.accounts.models import User
from liveclass.errors import InsufficientTokens, InvalidInput
from liveclass.wallet.models import EntryKind, LedgerEntry, Wallet

MAX_GRANT = 1_000_000


def open_wallet(user: User) -> Wallet:
    wallet, _ = Wallet.objects.get_or_create(user=user)
    return wallet


def lock(user: User) -> Wallet:
    """Take the user's wallet row lock (FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE
    transactions already hold the database write lock)."""
    try:
        return Wallet.objects.select_for_update().get(user=user)
    except Wallet.DoesNotExist:
        Wallet.objects.get_or_create(user=user)
        return Wallet.objects.select_for_update().get(user=user)


def balance(user: User) -> int:
    found = Wallet.objects.filter(user=user).values_list("balance", flat=True).first()
    return int(found or 0)


def history(user: User, limit: int = 100) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(user=user).order_by("-created_at", "-id")[:limit])


def _existing(user: User, key: str) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(user=user, idempotency_key=key).first()


def _append(user: User, amount: int, kind: str, key: str, reference: str, note: str) -> LedgerEntry:
    """Where credits are written (debits: `debit`): the entry and the wallet's balance
    change together, in the caller's transaction (the CHECK constraint refuses a negative)."""
    entry = LedgerEntry.objects.create(
        user=user, amount=amount, kind=kind, idempotency_key=key,
        reference=reference, note=note, created_at=clock.now(),
    )
    Wallet.objects.filter(user=user).update(balance=F("balance") + amount)
    return entry


def credit(
    user: User, amount: int, *, key: str, kind: str = EntryKind.GRANT, reference: str = "",
    note: str = "",
) -> LedgerEntry:
    """Add tokens once per idempotency key; a repeat returns the first entry."""
    if not 0 < amount <= MAX_GRANT:
        raise InvalidInput(f"amount must be between 1 and {MAX_GRANT}")
    if not key or len(key) > 120:
        raise InvalidInput("an idempotency key of 1-120 characters is required")
    with transaction.atomic():
        lock(user)
        found = _existing(user, key)
        if found is not None:
            if found.amount != amount or found.kind != kind:
                raise InvalidInput("idempotency key already used for a different entry", key=key)
            return found
        return _append(user, amount, kind, key, reference, note)


def grant(user: User, amount: int, *, key: str, note: str = "") -> LedgerEntry:
    return credit(user, amount, key=key, kind=EntryKind.GRANT, note=note)


class Debited(NamedTuple):
    entry: LedgerEntry
    balance: int  # the wallet's balance after the debit


# Plain SQL: enrollment, the hottest write, spends through here (the ORM's per-query
# Python cost was most of an enrollment's CPU in bench/enroll_load.py). Table names come
# from the models' Meta; every value is a parameter.
_DEBIT_SQL = (f"UPDATE {Wallet._meta.db_table} SET balance = balance - %s "  # noqa: S608
              "WHERE user_id = %s AND balance >= %s RETURNING balance")
_DEBIT_ENTRY_SQL = (
    f"INSERT INTO {LedgerEntry._meta.db_table} "  # noqa: S608
    "(user_id, amount, kind, idempotency_key, reference, note, created_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id"
)


def debit(user: User, amount: int, *, key: str, kind: str, reference: str = "", note: str = "",
          at: datetime | None = None) -> Debited:
    """Spend `amount` inside the caller's transaction, for a key the caller knows is unused
    (the unique constraint refuses a repeat, and then the caller's transaction fails).

    The conditional UPDATE takes the wallet row lock and, on PostgreSQL, re-checks
    `balance >= amount` on the locked row version; the CHECK constraint is the backstop.
    """
    assert transaction.get_connection().in_atomic_block, "debit outside a transaction"
    at = at or clock.now()
    with connection.cursor() as cursor:
        cursor.execute(_DEBIT_SQL, [amount, user.pk, amount])
        row = cursor.fetchone()
        if row is None:
            current = balance(user)
            raise InsufficientTokens(
                f"This costs {amount} tokens and your balance is {current}.",
                balance=current, price=amount,
            )
        cursor.execute(_DEBIT_ENTRY_SQL, [user.pk, -amount, kind, key, reference, note,
                                          connection.ops.adapt_datetimefield_value(at)])
        entry_id = cursor.fetchone()[0]
    entry = LedgerEntry(id=entry_id, user=user, amount=-amount, kind=kind, idempotency_key=key,
                        reference=reference, note=note, created_at=at)
    return Debited(entry, int(row[0]))


def debit_locked(
    user: User, amount: int, *, key: str, kind: str, reference: str = "", note: str = "",
    known_new: bool = False,
) -> LedgerEntry:
    """Spend `amount` once per key; the caller holds `lock(user)` inside a transaction.

    A repeated key returns the first entry. `known_new` skips that lookup when the
    caller has already proved the key unused under the same lock; the unique
    constraint still refuses a duplicate (and then the caller's transaction fails).
    """
    if not known_new:
        found = _existing(user, key)
        if found is not None:
            return found
    return debit(user, amount, key=key, kind=kind, reference=reference, note=note).entry
