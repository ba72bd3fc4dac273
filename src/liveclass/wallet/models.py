"""The wallet: an append-only token ledger. A balance is the sum of a user's entries."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class Wallet(models.Model):
    """One row per user: the lock that serialises a user's spending, and the running
    balance. The ledger is the record; `balance` is its sum, kept by the same
    transaction that appends each entry, so reading it (and checking it before a
    debit) is one row instead of a SUM over the history."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, primary_key=True, related_name="wallet"
    )
    balance = models.IntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "wallets"
        constraints = [
            models.CheckConstraint(condition=models.Q(balance__gte=0), name="wallet_balance_not_negative"),
        ]

    def __str__(self) -> str:
        return f"wallet of {self.user}"


class EntryKind(models.TextChoices):
    GRANT = "grant", "Grant"
    PURCHASE = "purchase", "Purchase"
    ENROLLMENT = "enrollment", "Enrollment"
    REFUND = "refund", "Refund"


class AppendOnlyError(RuntimeError):
    pass


class LedgerEntry(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger")
    amount = models.IntegerField(help_text="Tokens: positive credits, negative debits.")
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    idempotency_key = models.CharField(max_length=120)
    reference = models.CharField(max_length=64, blank=True, help_text="e.g. stream:42")
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "wallet_ledger"
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(fields=["user", "idempotency_key"], name="ledger_idempotency"),
            models.CheckConstraint(condition=~models.Q(amount=0), name="ledger_amount_nonzero"),
        ]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d} for {self.user_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnlyError("ledger entries are never changed; add a correcting entry")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("ledger entries are never deleted; add a correcting entry")
