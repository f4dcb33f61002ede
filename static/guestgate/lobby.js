// The lobby follows its join request live: a long poll answers as soon as the state changes.
"use strict";
(function () {
  const lobby = document.getElementById("lobby");
  if (!lobby) return;
  const url = lobby.dataset.statusUrl;
  let version = Number(lobby.dataset.version);
  const finished = new Set(["joined", "denied", "banned", "cancelled", "expired"]);

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
    if (state.reason) {
      if (state.status === "denied" || state.status === "banned") {
        reason.append(reason.dataset.moderatorSaid + " ");  // translated by the page
      }
      const quote = document.createElement("q");
      quote.textContent = state.reason;
      reason.append(quote);
    }
    document.getElementById("cancel-form").hidden = !state.can_cancel;
    document.getElementById("retry-form").hidden = !state.can_retry;
    const joined = document.getElementById("joined");
    joined.hidden = state.status !== "joined";
    if (state.session) {
      document.getElementById("session-json").textContent = JSON.stringify(state.session, null, 2);
      document.getElementById("call-link").href = state.call_url;
    }
    document.title = state.title + " – " + state.room_name;
  }

  async function follow() {
    let failures = 0;
    while (true) {
      try {
        const response = await fetch(url + "?since=" + version, {
          headers: { Accept: "application/json" },
          cache: "no-store",
        });
        if (!response.ok) throw new Error("status " + response.status);
        const state = await response.json();
        failures = 0;
        if (state.version !== version) {
          version = state.version;
          show(state);
        }
        if (finished.has(state.status)) return;
      } catch (error) {
        failures += 1;
        // Offline or the server restarting: wait longer each time, up to 15 s.
        await new Promise((resolve) => setTimeout(resolve, Math.min(15000, 500 * 2 ** failures)));
      }
    }
  }
  follow();
})();
