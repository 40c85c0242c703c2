/*
 * QuickVisit booking widget: list services, show free times of a day in the visitor's time zone, book one.
 *
 * Embed (the element's own content is what visitors without JavaScript see, so make it a link):
 *
 *   <div id="booking"><a href="mailto:hello@example.com">Email us to book</a></div>
 *   <script src="https://APP/static/widget/booking.js" data-key="qv_pk_..." data-api="https://APP"
 *           data-target="#booking" defer></script>
 *
 * data-key     a publishable API key with the Read and Write scopes, limited to the site's origin (required)
 * data-api     the API address; the script's own origin when left out
 * data-target  a CSS selector for the element to render into; a new element before the script otherwise
 * data-title   the widget's heading ("Book online")
 *
 * No dependencies, no inline styles or scripts (a strict Content-Security-Policy on the host page holds as
 * long as it allows this origin in script-src, style-src and connect-src), no globals.
 */
(function () {
  "use strict";

  // currentScript is null in a few loaders (e.g. some tag managers); the tag is then found by its file name.
  var script = document.currentScript || document.querySelector("script[data-key][src*='/widget/booking.js']");
  if (!script || !script.src) return; // nothing to read the key and the API address from

  var scriptUrl = new URL(script.src, document.baseURI);
  var config = {
    key: (script.getAttribute("data-key") || "").trim(),
    api: (script.getAttribute("data-api") || scriptUrl.origin).trim().replace(/\/+$/, ""),
    target: script.getAttribute("data-target"),
    title: script.getAttribute("data-title") || "Book online"
  };
  var LOOKAHEAD_DAYS = 14; // the first visit jumps to the first day with a free time within this range
  var instances = 0;

  // The stylesheet comes as a <link>, never as inline styles, so a host CSP without 'unsafe-inline' holds.
  function addStylesheet() {
    var href = new URL("booking.css", scriptUrl).href;
    var links = document.querySelectorAll("link[rel=stylesheet]");
    for (var i = 0; i < links.length; i++) if (links[i].href === href) return;
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    document.head.appendChild(link);
  }

  function el(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      var value = attributes[name];
      if (value === false || value === null || value === undefined) return;
      node.setAttribute(name, value === true ? "" : String(value));
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  // --- Dates and times ---------------------------------------------------------------------------------

  function visitorTimeZone() {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    } catch (error) {
      return "UTC";
    }
  }

  function isoDay(date) {
    function pad(number) { return (number < 10 ? "0" : "") + number; }
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate());
  }

  // Today, and days from it, on the visitor's own calendar (the browser's local time is the visitor's zone).
  function dayFromToday(days) {
    var now = new Date();
    return isoDay(new Date(now.getFullYear(), now.getMonth(), now.getDate() + days));
  }

  function addDays(day, days) {
    var parts = day.split("-").map(Number);
    return isoDay(new Date(parts[0], parts[1] - 1, parts[2] + days));
  }

  function formatter(options, timeZone) {
    var all = { timeZone: timeZone };
    Object.keys(options).forEach(function (name) { all[name] = options[name]; });
    try {
      return new Intl.DateTimeFormat(undefined, all);
    } catch (error) {
      delete all.timeZone;
      return new Intl.DateTimeFormat(undefined, all);
    }
  }

  function formatPrice(price) {
    if (!price || price.amount === 0) return "Free";
    try {
      var format = new Intl.NumberFormat(undefined, { style: "currency", currency: price.currency });
      var digits = format.resolvedOptions().maximumFractionDigits;
      return format.format(price.amount / Math.pow(10, digits)); // amounts are in minor units
    } catch (error) {
      return price.amount + " " + price.currency;
    }
  }

  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    // randomUUID needs a secure context; getRandomValues does not (a host page on plain http).
    var bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) { return (b + 0x100).toString(16).slice(1); }).join("");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" + hex.slice(16, 20) + "-" + hex.slice(20);
  }

  // --- The API -----------------------------------------------------------------------------------------

  // Resolves to {ok, status, body, retryAfter}; rejects only when the network fails.
  function request(method, path, body, extraHeaders) {
    var headers = { "Authorization": "Bearer " + config.key, "Accept": "application/json" };
    Object.keys(extraHeaders || {}).forEach(function (name) { headers[name] = extraHeaders[name]; });
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(config.api + path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : body,
      credentials: "omit",
      mode: "cors"
    }).then(function (response) {
      return response.text().then(function (text) {
        var parsed = null;
        try { parsed = text ? JSON.parse(text) : null; } catch (error) { parsed = null; }
        return {
          ok: response.ok,
          status: response.status,
          body: parsed,
          retryAfter: response.headers.get("Retry-After")
        };
      });
    });
  }

  var NETWORK_ERROR = "Could not reach the booking service. Check your connection and try again.";

  // What a visitor reads for an error answer. `retry`: trying the same request again later can help;
  // `slotGone`: the chosen time cannot be booked any more, so the day's times are fetched again.
  function describe(result) {
    var code = result.body && result.body.code;
    if (code === "origin_not_allowed") {
      return { text: "Origin not allowed: this website may not take bookings with this key." };
    }
    if (code === "rate_limited") {
      var wait = parseInt(result.retryAfter, 10);
      return { text: "Too many requests — try again in " + (wait >= 0 ? wait : 60) + " s.", retry: true };
    }
    if (code === "slot_unavailable") return { text: "That time was just taken — pick another.", slotGone: true };
    if (code === "insufficient_capacity") {
      var left = result.body.remaining_capacity;
      return {
        text: typeof left === "number" && left > 0
          ? "Only " + left + (left === 1 ? " place is" : " places are") +
            " left at that time — book fewer people or pick another time."
          : "That time was just taken — pick another.",
        slotGone: true
      };
    }
    if (["slot_in_past", "too_late_to_book", "too_early_to_book", "invalid_slot"].indexOf(code) >= 0) {
      return { text: "That time can no longer be booked — pick another.", slotGone: true };
    }
    if (["missing_api_key", "invalid_api_key", "key_revoked", "key_expired", "insufficient_scope"].indexOf(code) >= 0) {
      return { text: "Online booking is not available right now (the booking key is not valid). Please contact us to book." };
    }
    if (code === "service_unavailable") return { text: "The booking service is busy. Try again in a moment.", retry: true };
    if (code === "not_found") return { text: "This service can no longer be booked online." };
    if (result.status >= 500) return { text: "Something went wrong on our side. Try again in a moment.", retry: true };
    var detail = result.body && result.body.detail;
    return { text: detail || "Something went wrong (" + result.status + ")." };
  }

  // --- One widget --------------------------------------------------------------------------------------

  function Widget(container) {
    var n = ++instances;
    var id = function (name) { return "qv" + n + "-" + name; };
    var self = this;
    this.id = id;
    this.zone = visitorTimeZone();
    this.services = [];
    this.service = null;
    this.attempt = null; // {body, key}: a retry of the same booking reuses its Idempotency-Key
    this.availabilityRequest = 0;

    this.status = el("div", { "class": "qv-status", id: id("status"), role: "status", "aria-live": "polite", "aria-atomic": "true" });
    this.retryButton = el("button", { type: "button", "class": "qv-button qv-retry", hidden: true }, ["Try again"]);

    this.serviceSelect = el("select", { id: id("service"), name: "service", "aria-describedby": id("service-hint") });
    this.serviceHint = el("p", { "class": "qv-hint", id: id("service-hint") });

    var today = dayFromToday(0);
    this.dateInput = el("input", { type: "date", id: id("date"), name: "date", min: today, value: today, required: true, "aria-describedby": id("date-hint") });
    this.dateHint = el("p", { "class": "qv-hint", id: id("date-hint") }, ["Times are shown in your time zone, " + this.zone + "."]);

    this.slotList = el("div", { "class": "qv-slot-list" });
    this.slotsEmpty = el("p", { "class": "qv-hint qv-empty", id: id("slots-empty"), hidden: true });
    this.slotsError = el("p", { "class": "qv-field-error", id: id("slot-error"), hidden: true });
    this.slots = el("fieldset", { "class": "qv-slots", id: id("slots"), "aria-describedby": id("slots-empty") + " " + id("slot-error") }, [
      el("legend", {}, ["Free times"]), this.slotList, this.slotsEmpty, this.slotsError
    ]);

    this.partyField = el("div", { "class": "qv-field", hidden: true }, [
      el("label", { "for": id("party") }, ["People"]),
      (this.partyInput = el("input", { type: "number", id: id("party"), name: "party_size", min: 1, value: 1, inputmode: "numeric" }))
    ]);

    function field(name, label, attributes, optional) {
      attributes.id = id(name);
      attributes.name = name;
      var input = el("input", attributes);
      var error = el("p", { "class": "qv-field-error", id: id(name + "-error"), hidden: true });
      var labelNode = el("label", { "for": id(name) }, [label, optional ? el("span", { "class": "qv-optional" }, [" (optional)"]) : null]);
      return { input: input, error: error, node: el("div", { "class": "qv-field" }, [labelNode, input, error]) };
    }
    this.fields = {
      name: field("name", "Your name", { type: "text", autocomplete: "name", maxlength: 200, required: true }),
      email: field("email", "Email", { type: "email", autocomplete: "email", maxlength: 320, required: true }),
      phone: field("phone", "Phone", { type: "tel", autocomplete: "tel", maxlength: 32 }, true)
    };
    this.submit = el("button", { type: "submit", "class": "qv-button qv-primary" }, ["Book"]);

    this.form = el("form", { "class": "qv-form", novalidate: true, hidden: true, "aria-labelledby": id("title") }, [
      el("div", { "class": "qv-field" }, [el("label", { "for": id("service") }, ["Service"]), this.serviceSelect, this.serviceHint]),
      el("div", { "class": "qv-field" }, [el("label", { "for": id("date") }, ["Day"]), this.dateInput, this.dateHint]),
      this.slots,
      this.partyField,
      this.fields.name.node,
      this.fields.email.node,
      this.fields.phone.node,
      el("div", { "class": "qv-actions" }, [this.submit])
    ]);

    this.doneHeading = el("h3", { "class": "qv-done-title", id: id("done-title"), tabindex: -1 }, ["You're booked"]);
    this.doneSummary = el("p", { "class": "qv-done-summary" });
    this.doneReference = el("p", { "class": "qv-done-reference" });
    // The customer's own page to see or cancel the booking; its address is the only key to it.
    this.manageLink = el("a", { "class": "qv-manage", target: "_blank", rel: "noopener noreferrer" }, ["See or cancel this booking"]);
    this.doneManage = el("p", { "class": "qv-done-manage", hidden: true }, [this.manageLink]);
    this.again = el("button", { type: "button", "class": "qv-button" }, ["Book another"]);
    this.done = el("div", { "class": "qv-done", hidden: true }, [this.doneHeading, this.doneSummary, this.doneReference, this.doneManage, this.again]);

    this.root = el("section", { "class": "qv-widget", "aria-labelledby": id("title"), "aria-busy": "true" }, [
      el("h2", { "class": "qv-title", id: id("title") }, [config.title]),
      this.form,
      this.done,
      this.status,
      this.retryButton
    ]);

    while (container.firstChild) container.removeChild(container.firstChild);
    container.appendChild(this.root);

    this.serviceSelect.addEventListener("change", function () { self.chooseService(self.serviceSelect.value); });
    this.dateInput.addEventListener("change", function () {
      if (/^\d{4}-\d{2}-\d{2}$/.test(self.dateInput.value)) self.loadDay(self.dateInput.value);
    });
    this.slotList.addEventListener("change", function () { self.onSlotChosen(); });
    this.form.addEventListener("submit", function (event) {
      event.preventDefault();
      self.book();
    });
    this.again.addEventListener("click", function () { self.startOver(); });
    this.retryButton.addEventListener("click", function () {
      self.retryButton.hidden = true;
      if (self.retryAction) self.retryAction();
    });

    this.loadServices();
  }

  Widget.prototype.say = function (text, kind) {
    this.status.textContent = text || "";
    this.status.className = "qv-status" + (kind ? " qv-" + kind : "");
  };

  Widget.prototype.fail = function (result, retryAction) {
    var described = result ? describe(result) : { text: NETWORK_ERROR, retry: true };
    this.say(described.text, "error");
    this.retryAction = described.retry ? retryAction : null;
    this.retryButton.hidden = !described.retry || !retryAction;
    return described;
  };

  Widget.prototype.loadServices = function () {
    var self = this;
    this.say("Loading services…");
    request("GET", "/api/v1/services?limit=100").then(function (result) {
      self.root.removeAttribute("aria-busy");
      if (!result.ok) return self.fail(result, function () { self.loadServices(); });
      self.services = (result.body && result.body.data) || [];
      if (!self.services.length) return self.say("No services can be booked online right now.");
      while (self.serviceSelect.firstChild) self.serviceSelect.removeChild(self.serviceSelect.firstChild);
      self.services.forEach(function (service) {
        self.serviceSelect.appendChild(el("option", { value: service.id }, [service.name]));
      });
      self.form.hidden = false;
      self.chooseService(self.services[0].id);
    }, function () {
      self.root.removeAttribute("aria-busy");
      self.fail(null, function () { self.loadServices(); });
    });
  };

  Widget.prototype.chooseService = function (serviceId) {
    var service = this.services.filter(function (item) { return item.id === serviceId; })[0];
    if (!service) return;
    this.service = service;
    this.serviceSelect.value = service.id;
    var hint = service.duration_minutes + " min · " + formatPrice(service.price);
    this.serviceHint.textContent = service.description ? hint + " — " + service.description : hint;
    this.dateInput.max = dayFromToday(service.booking_horizon_days);
    this.partyField.hidden = service.capacity <= 1;
    this.partyInput.max = service.capacity;
    if (Number(this.partyInput.value) > service.capacity) this.partyInput.value = String(service.capacity);
    this.loadDay(dayFromToday(0), { findFirst: true });
  };

  // The free times of `day`. options.findFirst: jump to the first day with a free time from `day` on (one
  // request for the whole range). options.afterRefusal: the message that made us reload; it stays on screen
  // and focus goes to the fresh times, so the visitor can pick another at once.
  Widget.prototype.loadDay = function (day, options) {
    var self = this;
    var findFirst = Boolean(options && options.findFirst);
    var refusal = options && options.afterRefusal;
    var service = this.service;
    var ticket = ++this.availabilityRequest; // answers to an older choice are ignored
    var end = findFirst ? addDays(day, LOOKAHEAD_DAYS - 1) : day;
    if (this.dateInput.max && end > this.dateInput.max) end = this.dateInput.max < day ? day : this.dateInput.max;
    this.renderSlots([]);
    this.slotsEmpty.hidden = true;
    this.slots.setAttribute("aria-busy", "true");
    if (!refusal) this.say("Loading free times…");
    var query = "?service_id=" + encodeURIComponent(service.id) + "&start_date=" + day + "&end_date=" + end +
      "&time_zone=" + encodeURIComponent(this.zone);
    request("GET", "/api/v1/availability" + query).then(function (result) {
      if (ticket !== self.availabilityRequest) return;
      self.slots.removeAttribute("aria-busy");
      if (!result.ok) return self.fail(result, function () { self.loadDay(day, options); });
      self.zone = result.body.time_zone || self.zone; // the API names the zone it used
      var days = result.body.days || [];
      var chosen = findFirst
        ? days.filter(function (item) { return item.slots.length; })[0]
        : days.filter(function (item) { return item.date === day; })[0];
      chosen = chosen || { date: day, slots: [] };
      self.dateInput.value = chosen.date;
      self.renderSlots(chosen.slots);
      var dayLabel = formatter({ weekday: "long", day: "numeric", month: "long" }, "UTC")
        .format(new Date(chosen.date + "T12:00:00Z"));
      if (!chosen.slots.length) {
        self.slotsEmpty.textContent = findFirst
          ? "No free times in the next " + LOOKAHEAD_DAYS + " days — try a later day."
          : "No free times on " + dayLabel + " — try another day.";
        self.slotsEmpty.hidden = false;
      }
      if (refusal) {
        self.say(refusal, "error");
        (self.slotList.querySelector("input") || self.dateInput).focus();
      } else if (chosen.slots.length) {
        var count = chosen.slots.length;
        self.say(count + (count === 1 ? " free time" : " free times") + " on " + dayLabel + ".");
      } else {
        self.say(self.slotsEmpty.textContent);
      }
    }, function () {
      if (ticket !== self.availabilityRequest) return;
      self.slots.removeAttribute("aria-busy");
      self.fail(null, function () { self.loadDay(day, options); });
    });
  };

  Widget.prototype.renderSlots = function (slots) {
    var self = this;
    var clock = formatter({ hour: "2-digit", minute: "2-digit" }, this.zone);
    while (this.slotList.firstChild) this.slotList.removeChild(this.slotList.firstChild);
    slots.forEach(function (slot, index) {
      var inputId = self.id("slot-" + index);
      var text = clock.format(new Date(slot.start));
      var input = el("input", { type: "radio", "class": "qv-slot-input", name: self.id("slot"), id: inputId, value: slot.start });
      input.dataset.remaining = String(slot.remaining_capacity);
      var label = el("label", { "class": "qv-slot", "for": inputId }, [text]);
      if (self.service && self.service.capacity > 1) {
        label.appendChild(el("span", { "class": "qv-slot-left" }, [" · " + slot.remaining_capacity + " left"]));
      }
      self.slotList.appendChild(el("span", { "class": "qv-slot-item" }, [input, label]));
    });
    this.onSlotChosen();
  };

  Widget.prototype.chosenSlot = function () {
    return this.slotList.querySelector("input:checked");
  };

  Widget.prototype.onSlotChosen = function () {
    var chosen = this.chosenSlot();
    this.slotsError.hidden = true;
    this.slots.removeAttribute("aria-invalid");
    if (!chosen) {
      this.submit.textContent = "Book";
      return;
    }
    var clock = formatter({ hour: "2-digit", minute: "2-digit" }, this.zone);
    this.submit.textContent = "Book " + clock.format(new Date(chosen.value));
    var remaining = Number(chosen.dataset.remaining);
    if (this.service && this.service.capacity > 1 && remaining > 0) this.partyInput.max = remaining;
  };

  Widget.prototype.setFieldError = function (name, message) {
    var target = this.fields[name];
    if (!target) return null;
    target.error.textContent = message || "";
    target.error.hidden = !message;
    if (message) {
      target.input.setAttribute("aria-invalid", "true");
      target.input.setAttribute("aria-describedby", target.error.id);
    } else {
      target.input.removeAttribute("aria-invalid");
      target.input.removeAttribute("aria-describedby");
    }
    return message ? target.input : null;
  };

  // What the browser can tell without asking the API; returns the first control to fix, or null.
  Widget.prototype.validate = function () {
    var first = null;
    var chosen = this.chosenSlot();
    if (!chosen) {
      this.slotsError.textContent = "Pick a time.";
      this.slotsError.hidden = false;
      this.slots.setAttribute("aria-invalid", "true");
      first = this.slotList.querySelector("input") || this.dateInput;
    }
    var name = this.fields.name.input.value.trim();
    var email = this.fields.email.input.value.trim();
    first = this.setFieldError("name", name ? "" : "Enter your name.") && !first ? this.fields.name.input : first;
    var emailProblem = !email ? "Enter your email address." : !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email) ? "Enter an email address like name@example.com." : "";
    first = this.setFieldError("email", emailProblem) && !first ? this.fields.email.input : first;
    this.setFieldError("phone", "");
    return first;
  };

  Widget.prototype.book = function () {
    var self = this;
    if (this.busy) return;
    var invalid = this.validate();
    if (invalid) {
      this.say("Please correct the marked fields.", "error");
      invalid.focus();
      return;
    }
    var chosen = this.chosenSlot();
    var phone = this.fields.phone.input.value.trim();
    var payload = {
      service_id: this.service.id,
      start: chosen.value,
      party_size: this.service.capacity > 1 ? Math.max(1, parseInt(this.partyInput.value, 10) || 1) : 1,
      customer: { name: this.fields.name.input.value.trim(), email: this.fields.email.input.value.trim() }
    };
    if (phone) payload.customer.phone = phone;
    var body = JSON.stringify(payload);
    // The same booking sent again (after a network error, a busy server or a rate limit) keeps its key, so
    // the API answers it once; anything changed makes it a new booking with a new key.
    if (!this.attempt || this.attempt.body !== body) this.attempt = { body: body, key: uuid() };
    var slotText = formatter({ hour: "2-digit", minute: "2-digit" }, this.zone).format(new Date(chosen.value));
    this.busy = true;
    this.submit.disabled = true;
    this.retryButton.hidden = true;
    this.say("Booking " + slotText + "…");
    request("POST", "/api/v1/reservations", body, { "Idempotency-Key": this.attempt.key }).then(function (result) {
      self.busy = false;
      self.submit.disabled = false;
      if (result.ok) return self.confirm(result.body);
      if (result.body && result.body.code === "validation_error") return self.showFieldErrors(result.body);
      var described = self.fail(result, function () { self.book(); });
      if (described.slotGone) self.loadDay(self.dateInput.value, { afterRefusal: described.text });
    }, function () {
      self.busy = false;
      self.submit.disabled = false;
      self.fail(null, function () { self.book(); });
    });
  };

  Widget.prototype.showFieldErrors = function (problem) {
    var self = this;
    var first = null;
    var other = [];
    (problem.errors || []).forEach(function (error) {
      var name = (error.pointer || "").replace(/^\/customer\//, "");
      var input = self.fields[name] ? self.setFieldError(name, error.detail) : null;
      if (input && !first) first = input;
      if (!input) other.push(error.detail);
    });
    this.say(other.length ? other.join(" ") : "Please correct the marked fields.", "error");
    if (first) first.focus();
  };

  Widget.prototype.confirm = function (reservation) {
    var when = formatter({ weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit" }, this.zone)
      .format(new Date(reservation.start));
    var people = reservation.party_size > 1 ? " for " + reservation.party_size + " people" : "";
    this.attempt = null;
    this.form.hidden = true;
    this.retryButton.hidden = true;
    this.doneSummary.textContent = reservation.service.name + ", " + when + people + " (" + this.zone + ").";
    this.doneReference.textContent = "Reference: " + reservation.id;
    var manage = typeof reservation.manage_url === "string" && /^https?:\/\//.test(reservation.manage_url);
    if (manage) this.manageLink.setAttribute("href", reservation.manage_url);
    this.doneManage.hidden = !manage;
    this.done.hidden = false;
    this.say("Booked: " + reservation.service.name + ", " + when + ".", "success");
    this.doneHeading.focus();
  };

  Widget.prototype.startOver = function () {
    this.done.hidden = true;
    this.form.hidden = false;
    this.attempt = null;
    this.loadDay(this.dateInput.value || dayFromToday(0));
    this.serviceSelect.focus();
  };

  function start() {
    var container = config.target ? document.querySelector(config.target) : null;
    if (!container) {
      container = document.createElement("div");
      script.parentNode.insertBefore(container, script);
    }
    if (!config.key) {
      container.appendChild(el("p", { "class": "qv-status qv-error" }, ["Booking widget: the data-key attribute is missing."]));
      return;
    }
    addStylesheet();
    new Widget(container); // eslint-disable-line no-new
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
