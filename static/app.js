/* Verstak Sync Server: progressive enhancement only; every page works
 * without it (CSP script-src 'self': this file is the only script, and
 * it adds no inline code or style).
 *  - the language switch submits itself when a language is picked;
 *  - the device search on the dashboard filters as you type. */
"use strict";

(function () {
  function autoSubmitLocale() {
    var forms = document.querySelectorAll("form[data-autosubmit]");
    Array.prototype.forEach.call(forms, function (form) {
      var select = form.querySelector("select");
      var button = form.querySelector("button[type=submit]");
      if (!select) {
        return;
      }
      if (button) {
        button.hidden = true;
      }
      select.addEventListener("change", function () {
        form.submit();
      });
    });
  }

  function liveDeviceFilter() {
    var input = document.querySelector("input[data-filter]");
    if (!input) {
      return;
    }
    var list = document.getElementById(input.getAttribute("data-filter"));
    var none = document.getElementById("devices-nomatch");
    if (!list) {
      return;
    }
    var items = list.querySelectorAll("li[data-search]");
    function apply() {
      var q = input.value.trim().toLowerCase();
      var shown = 0;
      Array.prototype.forEach.call(items, function (li) {
        var hit = q === "" ||
          li.getAttribute("data-search").toLowerCase().indexOf(q) !== -1;
        li.hidden = !hit;
        if (hit) {
          shown += 1;
        }
      });
      if (none) {
        none.hidden = items.length === 0 || shown > 0;
      }
    }
    input.addEventListener("input", apply);
  }

  function start() {
    autoSubmitLocale();
    liveDeviceFilter();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
