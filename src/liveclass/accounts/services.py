"""Accounts: the name others see, and instructor access (a signed-in user enters the studio's
instructor code)."""

from __future__ import annotations

import hmac
import unicodedata

from liveclass import clock
from liveclass.accounts.models import User
from liveclass.config import web_config
from liveclass.errors import InvalidInput, InvalidInstructorCode, NotInstructor
from liveclass.forwarded import rate_key
from liveclass.ratelimit import limit

# The code is a shared secret, guessable only by brute force: tries are counted per
# client address and per account, whoever asks (page or API).
CODE_TRIES, CODE_WINDOW_SECONDS = 10, 300


MAX_DISPLAY_NAME = 60


def clean_display_name(name: str) -> str:
    """`name` stripped, if others may see it as a display name; `InvalidInput` (field
    "display_name") saying why not: empty, over MAX_DISPLAY_NAME characters, a control or
    format character, or an "@" (a pasted email would publish the very local part the
    display name exists to hide)."""
    name = name.strip()
    if not name:
        raise InvalidInput("Enter a name.", field="display_name")
    if len(name) > MAX_DISPLAY_NAME:
        raise InvalidInput(f"A name is at most {MAX_DISPLAY_NAME} characters.", field="display_name")
    # Cc and Cf: newlines and tabs, and invisible ones (bidi overrides) that could spoof a name.
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        raise InvalidInput("A name cannot contain control characters.", field="display_name")
    if "@" in name:
        raise InvalidInput("A name cannot contain “@”: use a name, not an email address.",
                           field="display_name")
    return name


def set_display_name(user: User, name: str) -> User:
    """Save `name` (cleaned by `clean_display_name`, which raises `InvalidInput`) as the name
    others see for `user` (`User.public_name`)."""
    user.display_name = clean_display_name(name)
    user.save(update_fields=["display_name"])
    return user


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
