"""What others may see of a user: never the local part of their email (often a full name)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Origin

from liveclass.accounts.models import User
from liveclass.chat import services as chat
from liveclass.streams import services as streams
from tests.run import answers_200, free_port, serve

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


def test_liveclass_run_logs_paths_without_queries_and_caps_websocket_frames(tmp_path: Path) -> None:
    """The real `liveclass run` (DEBUG: uvicorn's access log on): a token in any query never
    reaches the log, and a 1 MB chat frame closes the socket (1009) instead of being buffered."""
    from liveclass.cli import WS_MAX_BYTES
    from liveclass.demo import DEMO_INSTRUCTOR

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    secret = "leak-" + "q" * 24
    env = {**os.environ, "DEBUG": "1", "LIVECLASS_DATA_DIR": str(tmp_path / "data"),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'run.sqlite3'}", "REDIS_URL": "", "HOST": "127.0.0.1",
           "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "web.log"
    cmd = [sys.executable, "-m", "liveclass.cli", "run", "--no-media"]
    with serve(cmd, env, log_path, answers_200(f"{base}/api/streams"), "liveclass run", 90), \
            httpx.Client(base_url=base, timeout=10) as browser:
        assert browser.get("/streams", params={"token": secret}).status_code == 200
        listed = browser.get("/api/streams", params={"token": secret})
        assert listed.status_code == 200
        stream_id = listed.json()[0]["id"]
        form = browser.get("/accounts/login/", params={"token": secret})
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert csrf, form.text[:500]
        signed_in = browser.post("/accounts/login/", data={
            "csrfmiddlewaretoken": csrf.group(1), "login": DEMO_INSTRUCTOR[0], "password": DEMO_INSTRUCTOR[1]})
        assert signed_in.status_code == 302, signed_in.text[:500]
        cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
        with connect(f"ws://127.0.0.1:{port}/ws/streams/{stream_id}/chat/?token={secret}", origin=Origin(base),
                     additional_headers={"Cookie": cookie}, open_timeout=10, max_size=None) as socket:
            assert json.loads(socket.recv(10))["type"] == "history"
            socket.send(json.dumps({"type": "message", "body": "small frames pass"}))
            assert json.loads(socket.recv(10))["body"] == "small frames pass"
            with pytest.raises(ConnectionClosed) as closed:
                socket.send("x" * 1_000_000)  # far above WS_MAX_BYTES
                socket.recv(10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, (closed.value, WS_MAX_BYTES)
    log = log_path.read_text()
    assert '"GET /streams HTTP/1.1" 200' in log and '"GET /api/streams HTTP/1.1" 200' in log, log
    assert f'"WebSocket /ws/streams/{stream_id}/chat/"' in log, log
    assert secret not in log and "token=" not in log, log
