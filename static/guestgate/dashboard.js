// The moderator's queue follows the room live: a long poll answers as soon as anything changes.
"use strict";
(function () {
  const queue = document.getElementById("queue");
  if (!queue) return;
  const url = queue.dataset.url;
  // The page's own title ("Team call – Example e.V.", the organisation's name), counted.
  const title = document.title;
  let token = queue.dataset.token;
  let waiting = queue.querySelectorAll("li.knock").length;
  const sound = document.getElementById("sound");

  function beep() {
    if (!sound || !sound.checked) return;
    try {
      const context = new AudioContext();
      const tone = context.createOscillator();
      tone.frequency.value = 660;
      tone.connect(context.destination);
      tone.start();
      tone.stop(context.currentTime + 0.15);
    } catch (error) { /* no audio: the title still tells */ }
  }

  function showCount(count) {
    document.title = (count ? "(" + count + ") " : "") + title;
  }

  function busy() {
    // Do not replace the list under someone typing a reason.
    const active = document.activeElement;
    return active && queue.contains(active) && active.tagName === "INPUT" && active.value;
  }

  async function follow() {
    let failures = 0;
    showCount(waiting);
    while (true) {
      try {
        const response = await fetch(url + "?since=" + encodeURIComponent(token), {
          headers: { Accept: "application/json" }, cache: "no-store",
        });
        if (!response.ok) throw new Error("status " + response.status);
        const state = await response.json();
        failures = 0;
        if (state.token !== token && busy()) {
          await new Promise((resolve) => setTimeout(resolve, 1000));
        } else if (state.token !== token) {
          token = state.token;
          queue.innerHTML = state.html;
          if (state.waiting > waiting) beep();
          waiting = state.waiting;
          showCount(waiting);
        }
      } catch (error) {
        failures += 1;
        await new Promise((resolve) => setTimeout(resolve, Math.min(15000, 500 * 2 ** failures)));
      }
    }
  }
  follow();
})();
