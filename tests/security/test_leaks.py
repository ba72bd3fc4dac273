"""What others may see of a user: never the local part of their email (often a full name)."""

from __future__ import annotations

from liveclass.accounts.models import User
from liveclass.chat import services as chat
from liveclass.streams import services as streams

LOCAL = "jane.doe"


def test_a_public_name_never_shows_the_email(api, make_user, make_stream):
    jane = make_user(f"{LOCAL}@example.com", instructor=True)
    stream = make_stream(owner=jane, price=1)
    fan = make_user(tokens=1)
    streams.enroll(fan, stream.pk)
    chat.post(jane, stream.pk, "Welcome")
    assert LOCAL not in jane.public_name and jane.public_name
    named = User.objects.create_user("sam.smith@example.com", "pw-1234567", display_name="Sam")
    assert named.public_name == "Sam"

    anonymous, member = api(None), api(fan)
    schedule = anonymous.get("/api/streams")
    assert schedule.status_code == 200 and jane.public_name in schedule.content.decode()
    detail = anonymous.get(f"/api/streams/{stream.pk}")
    assert detail.status_code == 200
    history = member.get(f"/api/streams/{stream.pk}/chat")
    assert history.status_code == 200 and history.json()[0]["author"] == jane.public_name
    pages = [anonymous.get("/streams"), anonymous.get(f"/streams/{stream.pk}"),
             member.get(f"/streams/{stream.pk}/watch")]
    for response in [schedule, detail, history, *pages]:
        assert response.status_code == 200
        assert LOCAL not in response.content.decode(), response.request["PATH_INFO"]
    assert jane.public_name in pages[2].content.decode()  # the chat history names her
    event = chat.message_event(chat.recent(stream.pk)[0])
    assert event["author"] == jane.public_name and LOCAL not in str(event)
