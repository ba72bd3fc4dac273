"""Demo data for a newcomer: one instructor, one user with tokens, a few upcoming classes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from liveclass import clock

DEMO_INSTRUCTOR = ("instructor@liveclass.local", "dance-instructor-demo")
DEMO_USER = ("user@liveclass.local", "dance-user-demo")
DEMO_TOKENS = 20

CLASSES = [
    ("Morning Cardio Dance", "High-energy warm-up, three routines, cool-down.", 30, 2),
    ("Hip-Hop Fundamentals", "Grooves and footwork for beginners.", 45, 3),
    ("Latin Burn", "Salsa and merengue intervals. Bring water!", 50, 3),
    ("Stretch & Flow", "A gentle mobility session to end the week.", 40, 1),
]


@dataclass
class DemoResult:
    created: bool
    instructor: str
    user: str


def load_demo() -> DemoResult:
    """Idempotent: does nothing when any user exists already."""
    from django.db import transaction

    from liveclass.accounts.models import User
    from liveclass.chat import services as chat
    from liveclass.streams import services as streams
    from liveclass.wallet import services as wallet

    if User.objects.exists():
        return DemoResult(False, DEMO_INSTRUCTOR[0], DEMO_USER[0])
    with transaction.atomic():
        teacher = User.objects.create_user(DEMO_INSTRUCTOR[0], DEMO_INSTRUCTOR[1], display_name="Maya (demo)")
        teacher.is_instructor = True
        teacher.instructor_since = clock.now()
        teacher.save()
        dancer = User.objects.create_user(DEMO_USER[0], DEMO_USER[1], display_name="Sam (demo)")
        wallet.grant(dancer, DEMO_TOKENS, key="demo-starter", note="Starter tokens")
    start = clock.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for index, (title, description, minutes, price) in enumerate(CLASSES):
        stream = streams.create_stream(teacher, streams.StreamDraft(
            title=title, description=description, scheduled_start=start + timedelta(hours=6 * index),
            duration_minutes=minutes, price_tokens=price,
        ))
        chat.post(teacher, stream.pk, "Welcome! Say hi here while we warm up; I read the chat during class.")
    return DemoResult(True, DEMO_INSTRUCTOR[0], DEMO_USER[0])
