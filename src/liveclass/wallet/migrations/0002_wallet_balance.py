"""Wallet.balance: the running sum of the user's ledger, kept with each entry."""

from typing import Any

from django.db import migrations, models
from django.db.models import OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce


def backfill(apps: Any, schema_editor: Any) -> None:
    Wallet = apps.get_model("wallet", "Wallet")
    LedgerEntry = apps.get_model("wallet", "LedgerEntry")
    total = (LedgerEntry.objects.filter(user=OuterRef("user")).order_by()
             .values("user").annotate(t=Sum("amount")).values("t"))
    Wallet.objects.update(balance=Coalesce(Subquery(total), 0))


class Migration(migrations.Migration):
    dependencies = [("wallet", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="wallet", name="balance", field=models.IntegerField(default=0, editable=False)
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="wallet",
            constraint=models.CheckConstraint(condition=models.Q(balance__gte=0), name="wallet_balance_not_negative"),
        ),
    ]
