"""Each domain error says how it is reported: one slug, status and title per class, read by
the API, the pages and the chat websocket alike."""

from __future__ import annotations

import json

from liveclass import errors
from liveclass.api.problems import from_domain_error


def _subclasses(cls: type[errors.DomainError]) -> list[type[errors.DomainError]]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def test_every_domain_error_has_its_own_slug_status_and_title():
    classes = _subclasses(errors.DomainError)
    assert classes
    for cls in classes:
        assert "slug" in vars(cls) and "status" in vars(cls) and "title" in vars(cls), cls
        assert 400 <= cls.status < 600, cls
    slugs = [cls.slug for cls in classes]
    assert len(slugs) == len(set(slugs)), slugs


def test_the_problem_body_comes_from_the_error_class():
    response = from_domain_error(errors.RateLimited("Too many attempts; try again in 9 seconds.", retry_after=9))
    assert response.status_code == 429 and response["Retry-After"] == "9"
    assert json.loads(response.content) == {
        "type": "/problems/rate-limited", "title": "Too many requests", "status": 429,
        "detail": "Too many attempts; try again in 9 seconds.", "retry_after": 9,
    }
