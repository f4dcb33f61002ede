// Times as the viewer reads them (loaded with defer: the page is parsed).
// - <time datetime>: the moment in the viewer's time zone, formatted for the page's language
//   with the browser's region (<html lang="en-GB">: day/month). Without JavaScript the
//   server's text stays: the same moment in UTC, saying so.
// - <time datetime data-relative>: "just now", "2 min ago", kept current while the page is
//   open, in the words the server translated and put on the element (data-min="# min ago").
//   Lists replaced live (the dashboard's queue) are picked up as they arrive.
"use strict";
(function () {
  const language = document.documentElement.lang || undefined;
  let absolute;
  try {
    absolute = new Intl.DateTimeFormat(language, { dateStyle: "medium", timeStyle: "medium" });
  } catch (error) {
    absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }
  const UNITS = [[86400, "d"], [3600, "h"], [60, "min"]];

  function ago(time, moment) {
    const seconds = Math.max(0, Math.floor((Date.now() - moment.getTime()) / 1000));
    for (const [size, unit] of UNITS) {
      if (seconds >= size && time.dataset[unit]) {
        return time.dataset[unit].replace("#", String(Math.floor(seconds / size)));
      }
    }
    return time.dataset.justNow || time.textContent;
  }

  function update(root) {
    for (const time of root.querySelectorAll("time[datetime]")) {
      const moment = new Date(time.getAttribute("datetime"));
      if (Number.isNaN(moment.getTime())) continue;
      const text = time.hasAttribute("data-relative") ? ago(time, moment) : absolute.format(moment);
      const title = time.hasAttribute("data-relative") ? absolute.format(moment) : time.title || time.textContent;
      // Only real changes: the observer below sees every change this makes.
      if (time.textContent !== text) time.textContent = text;
      if (time.title !== title) time.title = title;  // absolute: the UTC text, on hover
    }
  }

  update(document);
  setInterval(() => update(document), 15000);
  new MutationObserver((mutations) => {
    for (const mutation of mutations) {
      for (const node of mutation.addedNodes) {
        if (node.nodeType === Node.ELEMENT_NODE) update(node.parentNode || node);
      }
    }
  }).observe(document.body, { childList: true, subtree: true });
})();
