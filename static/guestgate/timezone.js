// Forms that take a date and time: tell the server the viewer's time zone (a hidden field
// marked data-time-zone), so "expires on 10:30" means 10:30 where the moderator is. Without
// JavaScript the field stays empty and the server reads the time as UTC, and says so.
"use strict";
(function () {
  let zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (error) { zone = ""; }
  for (const field of document.querySelectorAll("input[data-time-zone]")) field.value = zone;
})();
