// The console's only script: whole log rows open their request, and "copy" buttons copy a value.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("tr.clickable[data-href]").forEach(function (row) {
    row.addEventListener("click", function (event) {
      if (event.target.closest("a, button, input, select")) {
        return;
      }
      window.location.assign(row.dataset.href);
    });
  });
  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      if (!navigator.clipboard) {
        return;
      }
      navigator.clipboard.writeText(button.dataset.copy).then(function () {
        button.textContent = "copied";
      }, function () {
        button.textContent = "copy failed";
      });
    });
  });
});
