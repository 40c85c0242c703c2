// Starts the vendored Swagger UI on /api/docs (a file, not an inline script, so the page's CSP holds).
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  if (!root || !window.SwaggerUIBundle) return;
  window.SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    domNode: root,
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    // The default highlighting theme's numbers are 3.45:1 on its background; this light theme's JSON colours
    // are all 4.5:1 or more.
    syntaxHighlight: { theme: "idea" },
  });
  // Two of Swagger UI's controls have no accessible name: its server picker (its <label> holds the select and no
  // text) and the Authorize dialog's icon-only close button. Name them, again whenever Swagger UI draws them anew.
  new MutationObserver(function () {
    var picker = root.querySelector("select#servers:not([aria-label])");
    if (picker) picker.setAttribute("aria-label", "Server");
    var close = root.querySelector("button.close-modal:not([aria-label])");
    if (close) close.setAttribute("aria-label", "Close");
  }).observe(root, { childList: true, subtree: true });
})();
