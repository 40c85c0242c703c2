// Behaviour for the staff pages: dialogs, copy buttons, toasts, focus. No inline scripts, so a strict CSP holds.
(function () {
  "use strict";

  var COPY_RESET_MS = 2500;

  // A modal dialog makes the rest of the page inert, its live region too: the toast region moves into the open
  // dialog while it is open, so toasts are announced either way.
  function homeToasts() {
    var region = document.getElementById("toasts");
    if (!region) return;
    var open = document.querySelectorAll("dialog[open]");
    var host = open.length ? open[open.length - 1] : document.body;
    if (region.parentElement !== host) host.appendChild(region);
  }

  // Where focus goes when a dialog's content appears: the first invalid field, else the new key.
  function focusInto(root) {
    var target = root.querySelector("[aria-invalid=true]:not(fieldset), fieldset[aria-invalid=true] input")
      || root.querySelector("#new-key-value");
    if (!target) return;
    target.focus();
    if (target.id === "new-key-value") target.select();
  }

  function openDialog(id) {
    var dialog = document.getElementById(id);
    if (!dialog) return false;
    if (dialog.open) dialog.close();
    dialog.showModal();
    homeToasts();
    focusInto(dialog);
    return true;
  }

  function keyDialogWarning(dialog) {
    return dialog.querySelector("#new-key-warning");
  }

  // The show-once dialog: closing it before the key was copied warns once; closing again closes.
  function mayClose(dialog) {
    var warning = keyDialogWarning(dialog);
    if (!warning || dialog.dataset.copied === "true" || dialog.dataset.warned === "true") return true;
    dialog.dataset.warned = "true";
    warning.hidden = false;
    warning.focus();
    return false;
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-open-dialog]");
    if (opener && openDialog(opener.getAttribute("data-open-dialog"))) {
      event.preventDefault();
      return;
    }
    var closer = event.target.closest("[data-close-dialog]");
    if (closer) {
      var dialog = closer.closest("dialog");
      if (dialog) {
        event.preventDefault();
        if (mayClose(dialog)) dialog.close();
      }
      return;
    }
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var field = document.getElementById(copy.getAttribute("data-copy"));
      if (!field) return;
      var text = field.value !== undefined ? field.value : field.textContent;
      var label = copy.getAttribute("data-copy-label") || "Text";
      navigator.clipboard.writeText(text).then(function () {
        copy.textContent = "Copied";
        var owner = copy.closest("dialog");
        // The curl line and the widget snippet hold the key too.
        if (owner && owner.querySelector("#new-key-value")) owner.dataset.copied = "true";
        showToast(label + " copied to the clipboard");
        setTimeout(function () { copy.textContent = "Copy"; }, COPY_RESET_MS);
      }, function () {
        if (field.select) field.select();
        showToast("Press Ctrl+C to copy the selected text");
      });
    }
  });

  // A role=button link (a no-JS fallback to a page) also answers Space, as a button does.
  document.addEventListener("keydown", function (event) {
    if (event.key !== " ") return;
    var opener = event.target.closest && event.target.closest("a[role=button][data-open-dialog]");
    if (opener && openDialog(opener.getAttribute("data-open-dialog"))) event.preventDefault();
  });

  // Escape on the show-once dialog before the key was copied: the same warning as Done.
  document.addEventListener("cancel", function (event) {
    var dialog = event.target;
    if (dialog instanceof HTMLDialogElement && !mayClose(dialog)) event.preventDefault();
  }, true);

  // Closing the create dialog forgets the key: its body is emptied at once and replaced by a blank form.
  document.addEventListener("close", function (event) {
    var dialog = event.target;
    if (!(dialog instanceof HTMLDialogElement)) return;
    homeToasts();
    if (!dialog.dataset.resetUrl) return;
    var body = dialog.firstElementChild;
    if (!body) return;
    var hadKey = body.querySelector("#new-key-value") !== null;
    body.innerHTML = "";
    delete dialog.dataset.copied;
    delete dialog.dataset.warned;
    if (window.htmx) {
      window.htmx.ajax("GET", dialog.dataset.resetUrl, { target: body, swap: "innerHTML" });
    }
    var returnUrl = dialog.dataset.returnUrl || "/settings/api-keys";
    if (hadKey && window.history.replaceState) window.history.replaceState(null, "", returnUrl);
    if (hadKey) {
      // Back to the button that opened it: Create key, or Roll key on the key page.
      var opener = document.querySelector("[data-open-dialog='" + dialog.id + "']");
      if (opener) opener.focus();
    }
  }, true);

  // Cards on narrow screens label each cell with its column's heading.
  function labelCells(root) {
    root.querySelectorAll("table.keys, table.listing").forEach(function (table) {
      var headings = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
        return th.textContent.trim();
      });
      table.querySelectorAll("tbody tr").forEach(function (row) {
        if (row.cells.length !== headings.length) return; // empty states and dividers span the table
        Array.prototype.forEach.call(row.cells, function (cell, index) {
          if (headings[index] && headings[index] !== "Actions") cell.setAttribute("data-label", headings[index]);
        });
      });
    });
  }

  // A dialog rendered open by the server (no-JS fallback, or after a full-page form post) becomes modal.
  document.addEventListener("DOMContentLoaded", function () {
    labelCells(document);
    document.querySelectorAll("dialog[open]").forEach(function (dialog) {
      dialog.close();
      dialog.showModal();
      homeToasts();
      focusInto(dialog);
      if (dialog.dataset.resetUrl && dialog.querySelector("#new-key-value")) {
        // The page was a form post; replace the history entry so a reload cannot re-submit it.
        window.history.replaceState(null, "", dialog.dataset.returnUrl || "/settings/api-keys");
      }
    });
  });

  // A swap may remove the dialog the toast region is in (a row with its confirmation dialog): keep it safe.
  document.addEventListener("htmx:beforeSwap", function () {
    var region = document.getElementById("toasts");
    if (region && region.parentElement !== document.body) document.body.appendChild(region);
  });

  // Which row of a table an action started from, so focus can go to the row that takes its place.
  var actionRow = null;
  document.addEventListener("htmx:beforeRequest", function (event) {
    var row = event.detail.elt.closest && event.detail.elt.closest("tbody tr");
    actionRow = row ? { body: row.parentElement.id, index: row.sectionRowIndex } : null;
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    labelCells(document);
    homeToasts();
    var target = event.detail.target;
    var dialog = target.closest && target.closest("dialog");
    if (dialog && dialog.open) {
      focusInto(dialog);
      return;
    }
    if (!actionRow) return;
    var body = document.getElementById(actionRow.body);
    var rows = body ? body.rows : [];
    var row = rows[Math.min(actionRow.index, rows.length - 1)];
    actionRow = null;
    var next = row && row.querySelector("a, button");
    if (next) {
      next.focus();
    } else {
      var create = document.querySelector("[data-open-dialog='create-key-dialog']");
      if (create) create.focus();
    }
  });

  function showToast(message) {
    homeToasts();
    var region = document.getElementById("toasts");
    if (!region) return;
    var toast = document.createElement("div");
    toast.className = "toast";
    toast.textContent = message;
    region.appendChild(toast);
    setTimeout(function () { toast.remove(); }, 4000);
  }

  document.addEventListener("toast", function (event) {
    showToast(event.detail && event.detail.message ? event.detail.message : "Done");
  });
  document.addEventListener("htmx:responseError", function (event) {
    if (event.detail.xhr.getResponseHeader("HX-Trigger")) return; // the server sent its own toast
    var status = event.detail.xhr.status;
    showToast(status === 403 ? "You are not allowed to do that (or your session expired): reload the page."
      : status === 404 ? "That item no longer exists: reload the page." : "Something went wrong (" + status + ").");
  });
  // Usage charts: a tooltip for the bar under the pointer, focused by keyboard or tapped; arrow keys move
  // between bars (one tab stop per chart). Without JavaScript the same numbers are in the table below.
  function chartTip(slot) {
    var figure = slot.closest("figure");
    return figure ? figure.querySelector(".chart-tip") : null;
  }

  function showTip(slot) {
    var tip = chartTip(slot);
    if (!tip) return;
    var figure = tip.parentElement;
    figure.querySelectorAll(".slot.active").forEach(function (other) { other.classList.remove("active"); });
    slot.classList.add("active");
    tip.textContent = "";
    slot.getAttribute("aria-label").split("; ").forEach(function (line, index) {
      var row = document.createElement("div");
      if (index === 0) row.className = "tip-title";
      row.textContent = line;
      tip.appendChild(row);
    });
    tip.hidden = false;
    var box = figure.getBoundingClientRect();
    var bar = slot.getBoundingClientRect();
    var left = bar.left - box.left + bar.width / 2 - tip.offsetWidth / 2;
    left = Math.max(4, Math.min(left, box.width - tip.offsetWidth - 4));
    var top = bar.top - box.top - tip.offsetHeight - 6;
    tip.style.left = left + "px";
    tip.style.top = Math.max(4, top) + "px";
  }

  function hideTip(figure) {
    var tip = figure && figure.querySelector(".chart-tip");
    if (!tip) return;
    tip.hidden = true;
    figure.querySelectorAll(".slot.active").forEach(function (slot) { slot.classList.remove("active"); });
  }

  document.addEventListener("pointerover", function (event) {
    var slot = event.target.closest && event.target.closest(".usage-chart .slot");
    if (slot) showTip(slot);
  });
  document.addEventListener("pointerout", function (event) {
    var chart = event.target.closest && event.target.closest(".usage-chart");
    if (!chart || (event.relatedTarget && chart.contains(event.relatedTarget))) return;
    var focused = chart.querySelector(".slot:focus");
    if (focused) showTip(focused); else hideTip(chart.closest("figure"));
  });
  document.addEventListener("focusin", function (event) {
    var slot = event.target.closest && event.target.closest(".usage-chart .slot");
    if (slot) showTip(slot);
  });
  document.addEventListener("focusout", function (event) {
    var slot = event.target.closest && event.target.closest(".usage-chart .slot");
    if (slot && !(event.relatedTarget && event.relatedTarget.closest && event.relatedTarget.closest(".usage-chart"))) {
      hideTip(slot.closest("figure"));
    }
  });
  document.addEventListener("keydown", function (event) {
    var slot = event.target.closest && event.target.closest(".usage-chart .slot");
    if (!slot) return;
    if (event.key === "Escape") { hideTip(slot.closest("figure")); return; }
    var slots = Array.prototype.slice.call(slot.parentNode.querySelectorAll(".slot"));
    var index = slots.indexOf(slot);
    var next = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: slots.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    next = Math.max(0, Math.min(next, slots.length - 1));
    slot.setAttribute("tabindex", "-1");
    slots[next].setAttribute("tabindex", "0");
    slots[next].focus();
  });
})();
