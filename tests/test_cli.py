from __future__ import annotations

import pytest

from liveclass.cli import main
from liveclass.config import media_config
from liveclass.media.tokens import verify_token
from liveclass.wallet import services as wallet


def test_wallet_grant_and_balance(make_user, capsys):
    user = make_user("dancer@example.test")
    assert main(["wallet", "grant", "dancer@example.test", "7", "--key", "k1"]) == 0
    assert main(["wallet", "grant", "dancer@example.test", "7", "--key", "k1"]) == 0  # same key: once
    assert wallet.balance(user) == 7
    assert main(["wallet", "balance", "DANCER@example.test"]) == 0
    assert capsys.readouterr().out.strip().endswith("dancer@example.test: 7 tokens")


def test_wallet_grant_unknown_user_fails_cleanly(db, capsys):
    assert main(["wallet", "grant", "nobody@example.test", "5"]) == 2
    assert "no user" in capsys.readouterr().err


def test_token_prints_a_verifiable_media_token(capsys):
    assert main(["token", "--role", "publish", "--input", "abc", "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip()
    claims = verify_token(media_config().MEDIA_SIGNING_KEY, token, role="publish", sub="abc")
    assert claims.sub == "abc"


def test_token_rejects_unknown_roles(capsys):
    with pytest.raises(SystemExit):
        main(["token", "--role", "admin", "--input", "abc"])


def test_demo_loads_once_with_classes_to_browse_and_a_chat_to_join(db, capsys):
    from django.contrib.auth import authenticate

    from liveclass.chat.models import ChatMessage
    from liveclass.demo import DEMO_INSTRUCTOR, DEMO_USER
    from liveclass.streams.models import LiveStreamSession

    assert main(["demo"]) == 0
    classes = LiveStreamSession.objects.filter(status="scheduled").count()
    assert classes >= 3
    assert ChatMessage.objects.filter(user__email=DEMO_INSTRUCTOR[0]).count() == classes
    assert authenticate(email=DEMO_USER[0], password=DEMO_USER[1]) is not None
    assert wallet.balance(authenticate(email=DEMO_USER[0], password=DEMO_USER[1])) > 0
    assert main(["demo"]) == 0  # a second run changes nothing
    assert LiveStreamSession.objects.count() == classes
