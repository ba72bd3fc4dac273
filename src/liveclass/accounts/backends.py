"""Authentication backends: Django's (admin sign-in) and allauth's (email sign-in), each
reading the signed-in user with one plain query.

`get_user` runs on every authenticated request. The ORM spent ~0.2 ms building the same
`SELECT ... WHERE id = %s` each time (py-spy on bench/enroll_load.py: a quarter of an
enrollment's web CPU); a raw query keeps the model's field conversions (RawQuerySet
applies them) and skips the query compiler. The row is still read on every request,
so deactivation and password changes (the session's auth hash) take effect at once.
"""

from __future__ import annotations

from typing import Any

from allauth.account.auth_backends import AuthenticationBackend
from django.contrib.auth.backends import ModelBackend

from liveclass.accounts.models import User

# Columns named, not *: a prepared `SELECT *` fails ("cached plan must not change result
# type") in processes still running while a migration adds a column.
_USER_SQL = (f"SELECT {', '.join(f.column for f in User._meta.concrete_fields)} "  # noqa: S608
             f"FROM {User._meta.db_table} WHERE id = %s")  # table and columns from Meta; id a parameter


class _FastGetUser:
    def get_user(self, user_id: Any) -> User | None:
        try:
            pk = int(user_id)
        except (TypeError, ValueError):
            return None
        if not 0 < pk < 2**63:
            return None
        found = list(User.objects.raw(_USER_SQL, [pk]))
        user = found[0] if found else None
        return user if user is not None and self.user_can_authenticate(user) else None  # type: ignore[attr-defined]


class PasswordBackend(_FastGetUser, ModelBackend):
    """Django's ModelBackend (the admin's sign-in form)."""


class EmailBackend(_FastGetUser, AuthenticationBackend):
    """allauth's backend (email + password on /accounts/login/)."""
