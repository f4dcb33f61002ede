// Copy and share buttons of a newly made invite link (the page carries the translated words).
"use strict";
(function () {
  const copy = document.getElementById("copy"), share = document.getElementById("share");
  const said = document.getElementById("copied");
  copy.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(copy.dataset.copy); said.textContent = said.dataset.copied; }
    catch (e) { document.getElementById("invite-url").select(); said.textContent = said.dataset.copyByHand; }
  });
  if (navigator.share) {
    share.hidden = false;
    share.addEventListener("click", () => navigator.share({ title: share.dataset.title, url: share.dataset.url }).catch(() => {}));
  }
})();
