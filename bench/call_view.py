"""The call in the lobby: how long from "let in" to Element Call's call view on the guest's
screen, with the call preloaded while the guest waits and without (``?preload=off``), and
what the lobby downloads (DESIGN "The call", README "The call in the lobby").

Each guest is a fresh Chromium context (nothing cached): it asks to join, waits until the
lobby says so (and, preloaded, until Element Call's iframe is there), then the moderator lets
it in (``join_request_approve``, what the dashboard's "Let in" calls) and the page notes when
Element Call's hang-up button first shows. Bytes are the compressed bytes of each response
(headers and body) as Chromium received them (Playwright's ``requestfinished`` sizes): before
"let in" and in all, on a first visit; and for a reload of the same lobby (the browser's cache
warm). Media is not part of it: no LiveKit server runs here (README).

All guests come from one address, so the per-address join limit must allow them:

    GUESTGATE_DEBUG=true python manage.py collectstatic --noinput
    GUESTGATE_JOIN_RATE_PER_IP=1000 python -m bench --only call_view
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from playwright.sync_api import Browser, Request, sync_playwright

from bench.measure import Scene, set_scene
from bench.report import Outcome, median, p95, table
from bench.stack import BenchError, Stack
from matrix import MatrixClient
from rooms.models import JoinRequest
from rooms.moderation import join_request_approve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
TIMEOUT_MS = 60_000
# What the page still fetches after a step (fonts, translations); its long poll never idles.
SETTLE_MS = 2_000
# The page's own clock: when Element Call's hang-up button first shows in the call's iframe
# (same origin). Polled each animation frame, so the figure is at most a frame late.
CALL_VIEW_SHOWN = """() => new Promise((resolve, reject) => {
  setTimeout(() => reject(new Error("no call view within a minute")), 60000);
  const look = () => {
    const frame = document.getElementById("call-frame");
    const button = frame?.contentDocument?.querySelector('[data-testid="incall_leave"]');
    if (button && button.getClientRects().length) resolve(Date.now());
    else requestAnimationFrame(look);
  };
  look();
})"""


@dataclass
class Bytes:
    """Compressed bytes received, and how many responses, split at "let in"."""

    before: int = 0
    after: int = 0
    responses: int = 0
    let_in: bool = False

    def count(self, request: Request) -> None:
        sizes = request.sizes()
        received = sizes["responseBodySize"] + sizes["responseHeadersSize"]
        self.responses += 1
        if self.let_in:
            self.after += received
        else:
            self.before += received


def run(
    stack: Stack, guest_appservice: MatrixClient, bot: MatrixClient, args: argparse.Namespace
) -> Outcome:
    if not CHROMIUM.exists():
        raise BenchError(f"{CHROMIUM} is missing (apt-get install chromium)")
    _static_files_current()
    scene = set_scene(stack.pair, stack.web_url, guest_appservice, bot)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    first_visit: Bytes | None = None
    revisit: Bytes | None = None
    # Playwright's sync API marks its event loop running in this thread; Django refuses queries
    # then unless told (tests/browser/conftest.py). GuestGate's processes are already running.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            for number in range(args.call_guests + args.call_warmup):
                for preload in (True, False):
                    name = f"Guest {number} {'pre' if preload else 'cold'}"
                    took, visit, again = _guest(browser, scene, name, preload=preload)
                    if number < args.call_warmup:
                        continue
                    seconds[preload].append(took)
                    if preload and first_visit is None:
                        first_visit, revisit = visit, again
                    print(f"  {name}: {took * 1000:.0f} ms", flush=True)
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    assert first_visit is not None and revisit is not None
    return _outcome(seconds, first_visit, revisit)


def _static_files_current() -> None:
    """The benchmark's web server is gunicorn, as deployed: it serves the collected static
    files, read when it started. They must be the current build's."""
    built = Path(settings.FRONTEND_BUILD_DIR) / "static" / "guestgate" / "call-host.js"
    collected = Path(settings.STATIC_ROOT) / "guestgate" / "call-host.js"
    if not built.exists():
        raise BenchError("the front end is not built (make frontend)")
    if not collected.exists() or collected.read_bytes() != built.read_bytes():
        raise BenchError(
            "the collected static files are not the current build's: "
            "GUESTGATE_DEBUG=true python manage.py collectstatic --noinput, then run again"
        )


def _guest(
    browser: Browser, scene: Scene, name: str, *, preload: bool
) -> tuple[float, Bytes, Bytes]:
    context = browser.new_context(permissions=["camera", "microphone"])
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    visit = Bytes()
    page.on("requestfinished", visit.count)
    try:
        if not preload:
            # Today's other way: only the prefetch of Element Call's start-up files while
            # waiting (the lobby's <link rel=prefetch>), no iframe until the reload below.
            page.route("**/call/index.html", lambda route: route.abort())
        page.goto(f"{scene.web_url}/j/{scene.invite_token}")
        page.get_by_label("Your name").fill(name)
        page.get_by_role("button", name="Ask to join").click()
        page.wait_for_selector('.status[data-status="waiting"]')
        lobby_url = page.url
        if not preload:
            page.unroute("**/call/index.html")
            page.goto(lobby_url + "?preload=off")
            page.wait_for_selector('.status[data-status="waiting"]')
        else:
            # Element Call is loaded and has negotiated: it waits for the guest's room state.
            page.wait_for_selector('#call[data-call-negotiated="true"]', state="attached")
            page.wait_for_timeout(SETTLE_MS)
        page.evaluate(f"() => {{ window.callViewShown = ({CALL_VIEW_SHOWN})(); }}")
        visit.let_in = True
        let_in_at = time.time()
        join_request = JoinRequest.objects.get(display_name__startswith=name)
        join_request_approve(join_request, moderator=scene.moderator_id)
        took = page.evaluate("() => window.callViewShown") / 1000 - let_in_at
        page.wait_for_timeout(SETTLE_MS)
        page.remove_listener("requestfinished", visit.count)
        again = Bytes(let_in=True)
        page.on("requestfinished", again.count)
        page.reload()
        page.evaluate(CALL_VIEW_SHOWN)
        page.wait_for_timeout(SETTLE_MS)
        return took, visit, again
    finally:
        context.close()


def _outcome(seconds: dict[bool, list[float]], first: Bytes, again: Bytes) -> Outcome:
    outcome = Outcome("call view")
    rows = [
        (
            "preloaded while waiting" if preload else "loaded at let in (?preload=off)",
            str(len(samples)),
            f"{median(samples) * 1000:.0f}",
            f"{p95(samples) * 1000:.0f}",
        )
        for preload, samples in seconds.items()
    ]
    outcome.tables.append(
        table(("let in -> call view on screen", "guests", "median ms", "p95 ms"), rows)
    )
    kb = 1000
    outcome.tables.append(
        table(
            ("lobby downloads (compressed, preloaded)", "kB"),
            [
                ("first visit, before let in", f"{first.before / kb:.0f}"),
                ("first visit, after let in", f"{first.after / kb:.0f}"),
                ("first visit, in all", f"{(first.before + first.after) / kb:.0f}"),
                ("reload of the joined lobby (cache warm)", f"{again.after / kb:.0f}"),
            ],
        )
    )
    preloaded, cold = median(seconds[True]), median(seconds[False])
    outcome.verdict("preloaded call view faster than loading at let in", preloaded < cold)
    return outcome
