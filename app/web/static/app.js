// Behaviour for the staff pages: dialogs, copy buttons, toasts. No inline scripts, so a strict CSP holds.
(function () {
  "use strict";

  function openDialog(id) {
    var dialog = document.getElementById(id);
    if (!dialog) return false;
    if (dialog.open) dialog.close();
    dialog.showModal();
    return true;
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
        dialog.close();
      }
      return;
    }
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var field = document.getElementById(copy.getAttribute("data-copy"));
      if (!field) return;
      navigator.clipboard.writeText(field.value).then(function () {
        copy.textContent = "Copied";
        showToast("Key copied to the clipboard");
      }, function () {
        field.select();
        showToast("Press Ctrl+C to copy the selected key");
      });
    }
  });

  // Closing the create dialog forgets the key: its body is emptied at once and replaced by a blank form.
  document.addEventListener("close", function (event) {
    var dialog = event.target;
    if (!(dialog instanceof HTMLDialogElement) || !dialog.dataset.resetUrl) return;
    var body = dialog.firstElementChild;
    if (!body) return;
    var hadKey = body.querySelector("#new-key-value") !== null;
    body.innerHTML = "";
    if (window.htmx) {
      window.htmx.ajax("GET", dialog.dataset.resetUrl, { target: body, swap: "innerHTML" });
    }
    if (hadKey && window.history.replaceState) window.history.replaceState(null, "", "/settings/api-keys");
  }, true);

  // A dialog rendered open by the server (no-JS fallback, or after a full-page form post) becomes modal.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("dialog[open]").forEach(function (dialog) {
      dialog.close();
      dialog.showModal();
      if (dialog.dataset.resetUrl && dialog.querySelector("#new-key-value")) {
        // The page was a form post; replace the history entry so a reload cannot re-submit it.
        window.history.replaceState(null, "", "/settings/api-keys");
      }
    });
  });

  function showToast(message) {
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
})();
