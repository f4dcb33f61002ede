// The lobby follows its join request live: a long poll answers as soon as the state changes.
"use strict";
(function () {
  const lobby = document.getElementById("lobby");
  if (!lobby) return;
  const url = lobby.dataset.statusUrl;
  let version = Number(lobby.dataset.version);
  let status = lobby.querySelector(".status").dataset.status;
  // "joined" is not among them: the guest pass still expires, and the page must say so.
  const finished = new Set(["denied", "banned", "cancelled", "expired", "removed"]);
  let message = document.getElementById("status-message").textContent;

  function show(state) {
    const section = lobby.querySelector(".status");
    section.dataset.status = state.status;
    const title = document.getElementById("status-title");
    title.textContent = state.title;
    if (state.can_cancel) {
      const spinner = document.createElement("span");
      spinner.className = "spinner";
      spinner.setAttribute("aria-hidden", "true");
      title.prepend(spinner, " ");
    }
    document.getElementById("status-message").textContent = state.message;
    const reason = document.getElementById("status-reason");
    reason.hidden = !state.reason;
    reason.textContent = "";
    if (state.moderator_said) {
      // Only a moderator's own typed words are quoted as theirs.
      reason.append(reason.dataset.moderatorSaid + " ");  // translated by the page
      const quote = document.createElement("q");
      quote.textContent = state.reason;
      reason.append(quote);
    } else if (state.reason) {
      reason.textContent = state.reason;  // GuestGate's own words, said plainly
    }
    document.getElementById("joining-as").hidden = !state.show_name;
    // A moderator's line to the waiting guests: text only, never markup.
    document.getElementById("announcement-text").textContent = state.announcement || "";
    document.getElementById("announcement").hidden = !state.announcement;
    document.getElementById("cancel-form").hidden = !state.can_cancel;
    document.getElementById("retry-form").hidden = !state.can_retry;
    document.getElementById("ask-again-form").hidden = !state.can_ask_again;
    const joined = document.getElementById("joined");
    joined.hidden = state.status !== "joined";
    // Without a session (an expired pass) the page keeps no token.
    document.getElementById("session-json").textContent = state.session
      ? JSON.stringify(state.session, null, 2)
      : "";
    document.getElementById("call-link").href = state.call_url || "#";
    document.title = state.title + " – " + state.room_name;
    // The call's host (call-host.js, embedded mode) starts and ends the call from this. It is
    // a module that may start after the first change (its chunks load): it reads the latest.
    window.guestgateLobbyState = state;
    document.dispatchEvent(new CustomEvent("guestgate:lobby-state", { detail: state }));
  }

  async function follow() {
    let failures = 0;
    while (!finished.has(status)) {
      try {
        const response = await fetch(url + "?since=" + version, {
          headers: { Accept: "application/json" },
          cache: "no-store",
        });
        if (!response.ok) throw new Error("status " + response.status);
        const state = await response.json();
        failures = 0;
        // The status may change with the same version (a let-in guest's pass expiring), and
        // the message too (no worker running while the pass is made).
        if (state.version !== version || state.status !== status || state.message !== message) {
          version = state.version;
          status = state.status;
          message = state.message;
          show(state);
        }
      } catch (error) {
        failures += 1;
        // Offline or the server restarting: wait longer each time, up to 15 s.
        await new Promise((resolve) => setTimeout(resolve, Math.min(15000, 500 * 2 ** failures)));
      }
    }
  }
  follow();
})();
