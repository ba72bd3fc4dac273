from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html

from liveclass.accounts.models import User
from liveclass.errors import DomainError
from liveclass.wallet import services
from liveclass.wallet.models import LedgerEntry, Wallet


class GrantForm(forms.Form):
    amount = forms.IntegerField(min_value=1, max_value=services.MAX_GRANT)
    note = forms.CharField(max_length=200, required=False)
    idempotency_key = forms.CharField(max_length=120, widget=forms.HiddenInput)


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ("user", "balance", "created_at")
    search_fields = ("user__email",)
    readonly_fields = ("user", "balance", "grant_link", "created_at")

    @admin.display(description="balance")
    def balance(self, obj: Wallet) -> int:
        return services.balance(obj.user)

    @admin.display(description="grant")
    def grant_link(self, obj: Wallet) -> str:
        return format_html('<a href="{}">Grant tokens…</a>', reverse("admin:wallet_grant", args=[obj.pk]))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        own = [path("<int:user_id>/grant/", self.admin_site.admin_view(self.grant_view), name="wallet_grant")]
        return own + super().get_urls()

    def grant_view(self, request: HttpRequest, user_id: int) -> HttpResponse:
        import secrets

        # admin_view only asks for staff: a grant creates money, so it takes the change permission.
        if not self.has_change_permission(request):
            raise PermissionDenied
        user = get_object_or_404(User, pk=user_id)
        if request.method == "POST":
            form = GrantForm(request.POST)
            if form.is_valid():
                try:
                    services.grant(
                        user, form.cleaned_data["amount"],
                        key=f"admin:{form.cleaned_data['idempotency_key']}",
                        note=form.cleaned_data["note"] or f"Granted by {request.user}",
                    )
                except DomainError as exc:
                    messages.error(request, exc.detail)
                else:
                    messages.success(request, f"Granted {form.cleaned_data['amount']} tokens to {user}.")
                    return HttpResponseRedirect(reverse("admin:wallet_wallet_change", args=[user.pk]))
        else:
            form = GrantForm(initial={"idempotency_key": secrets.token_hex(12)})
        context = {**self.admin_site.each_context(request), "form": form, "target": user,
                   "balance": services.balance(user), "title": f"Grant tokens to {user}"}
        return render(request, "admin/wallet/grant.html", context)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "kind", "amount", "reference", "note")
    list_filter = ("kind",)
    search_fields = ("user__email", "reference", "idempotency_key")
    readonly_fields = ("user", "amount", "kind", "idempotency_key", "reference", "note", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
