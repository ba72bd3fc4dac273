"""Instructor access: a signed-in user enters the studio's instructor code."""

from __future__ import annotations

import hmac

from liveclass import clock
from liveclass.accounts.models import User
from liveclass.config import web_config
from liveclass.errors import InvalidInstructorCode


def become_instructor(user: User, code: str) -> User:
    expected = web_config().INSTRUCTOR_ACCESS_TOKEN
    # Constant time: the code is a shared secret.
    if not expected or not hmac.compare_digest(code.encode(), expected.encode()):
        raise InvalidInstructorCode("That instructor code is not valid.")
    if not user.is_instructor:
        user.is_instructor = True
        user.instructor_since = clock.now()
        user.save(update_fields=["is_instructor", "instructor_since"])
    return user
