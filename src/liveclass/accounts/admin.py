from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from liveclass.accounts.models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "display_name", "is_instructor", "is_staff", "date_joined")
    list_filter = ("is_instructor", "is_staff", "is_active")
    search_fields = ("email", "display_name")
    fieldsets = (
        (None, {"fields": ("email", "password", "display_name")}),
        ("Roles", {"fields": ("is_instructor", "instructor_since", "is_active", "is_staff", "is_superuser")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
