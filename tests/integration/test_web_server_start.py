"""GuestGate's web server as the tests, the bench and ``make run`` start it: its readiness
check is answered, not refused, so its log starts with no error that is not one."""

from __future__ import annotations

import re

from django.conf import settings

from devtools import processes


def test_the_readiness_ping_is_answered_and_leaves_no_refusal_in_the_log(
    guestgate_web: str,
) -> None:
    assert processes.appservice_answering(guestgate_web)

    log = (settings.VAR_DIR / "test-logs" / "web.log").read_text()
    # The access log line, plain or inside a JSON log record (its quotes escaped).
    assert re.search(r'POST /_matrix/app/v1/ping HTTP/1\.1\\?" 200', log), log
    assert "Unauthorized" not in log
    assert " 401 " not in log


def test_a_server_that_refuses_guestgates_token_is_not_guestgate(guestgate_web: str) -> None:
    assert not processes.appservice_answering(guestgate_web, hs_token="not the hs_token")
