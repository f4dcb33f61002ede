"""A guest's browser without the browser: cookies, the CSRF token and the lobby's long poll,
over real HTTP against GuestGate's web server; and a moderator's at the dashboard. Shared by
the integration tests and ``make bench``."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx


class GuestBrowser:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
        self.lobby_path: str | None = None

    def close(self) -> None:
        self.http.close()

    def open_invite(self, token: str) -> httpx.Response:
        return self.http.get(f"/j/{token}")

    def ask_to_join(self, token: str, name: str) -> httpx.Response:
        """Open the invite link, type ``name`` and submit; remember the lobby it leads to."""
        page = self.open_invite(token)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert csrf, f"no form on the join page ({page.status_code})"
        answer = self.http.post(
            f"/j/{token}", data={"csrfmiddlewaretoken": csrf.group(1), "display_name": name}
        )
        if answer.status_code == 302:
            self.lobby_path = answer.headers["location"]
        return answer

    def lobby(self) -> httpx.Response:
        assert self.lobby_path
        return self.http.get(self.lobby_path)

    def status(self, since: int | None = None) -> dict[str, Any]:
        assert self.lobby_path
        params = {"since": since} if since is not None else {}
        response = self.http.get(f"{self.lobby_path}/status", params=params)
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def wait_for(self, *statuses: str, timeout: float = 30) -> dict[str, Any]:
        """Follow the lobby as its page does (long poll) until it shows one of ``statuses``."""
        deadline = time.monotonic() + timeout
        state = self.status()
        while state["status"] not in statuses:
            if time.monotonic() > deadline:
                raise AssertionError(f"lobby still {state['status']!r}, expected {statuses}")
            state = self.status(since=state["version"])
        return state

    def press(self, button: str) -> httpx.Response:
        """Press "cancel" or "retry" in the lobby (a CSRF-protected form)."""
        page = self.lobby()
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert csrf and self.lobby_path
        return self.http.post(
            f"{self.lobby_path}/{button}", data={"csrfmiddlewaretoken": csrf.group(1)}
        )


class ModeratorBrowser:
    """A moderator at the dashboard, over real HTTP (sign-in, CSRF, the queue's long poll)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)

    def close(self) -> None:
        self.http.close()

    def _csrf(self, path: str) -> str:
        page = self.http.get(path)
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert found, f"no form at {path} ({page.status_code})"
        return found.group(1)

    def sign_in(self, matrix_id: str, password: str) -> httpx.Response:
        csrf = self._csrf("/moderator/sign-in")
        return self.http.post(
            "/moderator/sign-in",
            data={"csrfmiddlewaretoken": csrf, "matrix_id": matrix_id, "password": password},
        )

    def post(self, path: str, **data: str) -> httpx.Response:
        csrf = self._csrf("/moderator/")
        return self.http.post(path, data={"csrfmiddlewaretoken": csrf, **data})

    def room_page(self, room_pk: int) -> httpx.Response:
        return self.http.get(f"/moderator/rooms/{room_pk}")

    def queue(self, room_pk: int, since: str = "") -> dict[str, Any]:
        response = self.http.get(f"/moderator/rooms/{room_pk}/queue", params={"since": since})
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def wait_for_queue(self, room_pk: int, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        """Follow the queue as the dashboard does until ``predicate(state)`` holds."""
        deadline = time.monotonic() + timeout
        state = self.queue(room_pk)
        while not predicate(state):
            if time.monotonic() > deadline:
                raise AssertionError(f"queue never matched; last: {state['html'][:500]}")
            state = self.queue(room_pk, since=state["token"])
        return state
