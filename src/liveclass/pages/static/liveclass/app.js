// Progressive enhancement only: local times, the sign-in dialog, confirmations.
(function () {
  "use strict";
  const base = { weekday: "short", day: "numeric", month: "short", hour: "numeric", minute: "2-digit", timeZoneName: "short" };
  const thisYear = new Intl.DateTimeFormat(undefined, base);
  const otherYear = new Intl.DateTimeFormat(undefined, { ...base, year: "numeric" });
  const year = new Date().getFullYear();
  document.querySelectorAll("time[data-local]").forEach((el) => {
    const d = new Date(el.getAttribute("datetime"));
    if (!isNaN(d)) el.textContent = (d.getFullYear() === year ? thisYear : otherYear).format(d);
  });
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  document.querySelectorAll('input[name="tz"]').forEach((el) => { el.value = tz; });
  document.querySelectorAll("[data-tz-name]").forEach((el) => { el.textContent = tz; });
  document.querySelectorAll("[data-open-dialog]").forEach((el) => {
    el.addEventListener("click", (ev) => {
      const dialog = document.getElementById(el.getAttribute("data-open-dialog"));
      if (dialog && typeof dialog.showModal === "function") {
        ev.preventDefault();
        dialog.showModal();
        const first = dialog.querySelector("input:not([type=hidden])");
        if (first) first.focus();
      }
    });
  });
  document.querySelectorAll("[data-close-dialog]").forEach((el) => {
    el.addEventListener("click", () => el.closest("dialog").close());
  });
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (ev) => { if (!window.confirm(form.getAttribute("data-confirm"))) ev.preventDefault(); });
  });
})();
