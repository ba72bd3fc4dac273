"""Chat over the JSON API and on the watch page without JavaScript."""

from __future__ import annotations


def test_api_post_and_history(api, member, instructor):
    fan, stream = member
    posted = api(fan).post(f"/api/streams/{stream.pk}/chat", {"body": "Ready to dance"})
    assert posted.status_code == 201, posted.content
    assert posted.json()["body"] == "Ready to dance" and posted.json()["author"] == fan.public_name
    coach = api(instructor)
    assert [m["body"] for m in coach.get(f"/api/streams/{stream.pk}/chat").json()] == ["Ready to dance"]
    hidden = coach.post(f"/api/chat/{posted.json()['id']}/hide")
    assert hidden.status_code == 200
    assert api(fan).get(f"/api/streams/{stream.pk}/chat").json() == []


def test_api_refusals_are_problems(api, member, make_user):
    fan, stream = member
    assert api(None).get(f"/api/streams/{stream.pk}/chat").status_code == 401
    outsider = api(make_user())
    refused = outsider.post(f"/api/streams/{stream.pk}/chat", {"body": "let me in"})
    assert refused.status_code == 403 and refused.json()["detail"]
    empty = api(fan).post(f"/api/streams/{stream.pk}/chat", {"body": "   "})
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
    member_hides = api(fan).post("/api/chat/1/hide")
    assert member_hides.status_code in (403, 404)


def test_watch_page_shows_escaped_history_and_posts_without_javascript(api, member):
    fan, stream = member
    client = api(fan).client
    response = client.post(f"/streams/{stream.pk}/chat", {"body": "<img src=x onerror=alert(1)>",
                                                           "csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert response.status_code == 303 and response["Location"].endswith(f"/streams/{stream.pk}/watch#chat")
    page = client.get(f"/streams/{stream.pk}/watch").content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
    assert f'data-ws-path="/ws/streams/{stream.pk}/chat/"' in page


def test_no_chat_panel_for_strangers(api, member, make_user):
    _, stream = member
    page = api(make_user()).client.get(f"/streams/{stream.pk}/watch").content.decode()
    assert 'data-testid="chat"' not in page


def test_the_broadcast_page_has_the_chat_and_its_form_returns_there(api, member, instructor):
    fan, stream = member
    client = api(instructor).client
    page = client.get(f"/instructor/streams/{stream.pk}/broadcast").content.decode()
    assert f'data-ws-path="/ws/streams/{stream.pk}/chat/"' in page and 'data-can-moderate="1"' in page
    response = client.post(f"/streams/{stream.pk}/chat", {
        "body": "Warm up!", "back": "broadcast", "csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert response["Location"].endswith(f"/instructor/streams/{stream.pk}/broadcast#chat")
    watch = api(fan).client.get(f"/streams/{stream.pk}/watch").content.decode()
    assert "Warm up!" in watch and 'data-can-moderate=""' in watch


def test_staff_hide_messages_from_the_admin(member, admin_client):
    from liveclass.chat import services as chat
    from liveclass.chat.models import ChatMessage

    fan, stream = member
    message = chat.post(fan, stream.pk, "off-topic")
    response = admin_client.post("/admin/chat/chatmessage/", {
        "action": "hide", "_selected_action": [message.pk]})
    assert response.status_code == 302
    message.refresh_from_db()
    assert message.hidden_at is not None and message.hidden_by is not None
    assert not ChatMessage.objects.filter(hidden_at__isnull=True).exists()
