// Times in the viewer's time zone and the page's language (loaded with defer: the page is
// parsed). Without JavaScript the server's text stays: the same moment in UTC, saying so.
"use strict";
(function () {
  const language = document.documentElement.lang || undefined;
  for (const time of document.querySelectorAll("time[datetime]")) {
    const moment = new Date(time.getAttribute("datetime"));
    if (Number.isNaN(moment.getTime())) continue;
    time.title = time.textContent;  // the UTC text, on hover
    time.textContent = moment.toLocaleString(language);
  }
})();
