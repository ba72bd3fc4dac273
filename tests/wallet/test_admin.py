from __future__ import annotations

import re

from django.test import Client

from liveclass.accounts.models import User
from liveclass.wallet import services as wallet


def test_staff_grant_tokens_in_the_admin_once_per_form(make_user):
    staff = User.objects.create_superuser("staff@example.test", "pw-staff-123")
    dancer = make_user(tokens=1)
    client = Client()
    client.force_login(staff)
    change = client.get(f"/admin/wallet/wallet/{dancer.pk}/change/")
    assert change.status_code == 200 and b"Grant tokens" in change.content
    form = client.get(f"/admin/wallet/wallet/{dancer.pk}/grant/").content.decode()
    key = re.search(r'name="idempotency_key" value="([^"]+)"', form).group(1)
    data = {"amount": 5, "note": "Welcome back", "idempotency_key": key}
    assert client.post(f"/admin/wallet/wallet/{dancer.pk}/grant/", data).status_code == 302
    client.post(f"/admin/wallet/wallet/{dancer.pk}/grant/", data)  # a double-click grants once
    assert wallet.balance(dancer) == 6


def test_ledger_is_read_only_in_the_admin(make_user):
    staff = User.objects.create_superuser("staff@example.test", "pw-staff-123")
    dancer = make_user(tokens=3)
    client = Client()
    client.force_login(staff)
    entry = dancer.ledger.get()
    assert client.get("/admin/wallet/ledgerentry/add/").status_code == 403
    assert client.post(f"/admin/wallet/ledgerentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert wallet.balance(dancer) == 3


def test_non_staff_cannot_reach_the_admin(make_user):
    client = Client()
    client.force_login(make_user())
    assert client.get("/admin/wallet/wallet/").status_code == 302


def test_the_grant_page_needs_the_wallet_change_permission(make_user):
    from django.contrib.auth.models import Permission

    dancer = make_user(tokens=1)
    viewer = User.objects.create_user("viewer@example.test", "pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_wallet"))
    granter = User.objects.create_user("granter@example.test", "pw-granter-123", is_staff=True)
    granter.user_permissions.add(Permission.objects.get(codename="change_wallet"))
    url = f"/admin/wallet/wallet/{dancer.pk}/grant/"
    data = {"amount": 5, "note": "", "idempotency_key": "k-1"}
    refused, allowed = Client(), Client()
    refused.force_login(viewer)
    allowed.force_login(granter)
    assert refused.get(url).status_code == 403
    assert refused.post(url, data).status_code == 403
    assert wallet.balance(dancer) == 1
    assert allowed.get(url).status_code == 200
    assert allowed.post(url, data).status_code == 302
    assert wallet.balance(dancer) == 6
