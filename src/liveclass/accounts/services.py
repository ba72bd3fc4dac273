"""Instructor access: a signed-in user enters the studio's instructor code."""

from __future__ import annotations

import hmac

from liveclass import clock
from liveclass.accounts.models import User
from liveclass.config import web_config
from liveclass.errors import InvalidInstructorCode, NotInstructor
from liveclass.forwarded import rate_key
from liveclass.ratelimit import limit

# The code is a shared secret, guessable only by brute force: tries are counted per
# client address and per account, whoever asks (page or API).
CODE_TRIES, CODE_WINDOW_SECONDS = 10, 300


def become_instructor(user: User, code: str, *, client_address: str) -> User:
    """Grant the instructor role for the right code; `RateLimited` past CODE_TRIES tries per
    CODE_WINDOW_SECONDS from one address or for one account (a try with the right code counts too)."""
    limit("instructor-code-address", rate_key(client_address), max_calls=CODE_TRIES,
          window_seconds=CODE_WINDOW_SECONDS)
    limit("instructor-code-user", str(user.pk), max_calls=CODE_TRIES, window_seconds=CODE_WINDOW_SECONDS)
    expected = web_config().INSTRUCTOR_ACCESS_TOKEN
    # Constant time: the code is a shared secret.
    if not expected or not hmac.compare_digest(code.encode(), expected.encode()):
        raise InvalidInstructorCode("That instructor code is not valid.")
    if not user.is_instructor:
        user.is_instructor = True
        user.instructor_since = clock.now()
        user.save(update_fields=["is_instructor", "instructor_since"])
    return user


def require_instructor(user: User) -> User:
    """`user`, if they hold the instructor role; `NotInstructor` otherwise."""
    if not user.is_instructor:
        raise NotInstructor("Only instructors can do this; enter the instructor code first.")
    return user
