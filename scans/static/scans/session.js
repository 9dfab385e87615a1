// Automatic logoff: the server ends a session after a set time without a request. Warn
// before it does, let the user stay, and say plainly when it has ended and what was not sent.
"use strict";

(() => {
  const idleSeconds = Number(document.body.dataset.sessionIdleSeconds);
  const banner = document.getElementById("session-warning");
  if (!idleSeconds || !banner) return;
  const warnSeconds = Math.min(120, idleSeconds / 4);
  let lastRequest = Date.now();
  let ended = false;
  const sendRequest = window.fetch.bind(window);
  // Every request the page makes for the user restarts the server's idle time, so it restarts
  // ours; the page's own polling (X-Background) restarts neither.
  window.fetch = (...args) => {
    const headers = (args[1] && args[1].headers) || {};
    if (headers["X-Background"] !== "1") lastRequest = Date.now();
    return sendRequest(...args);
  };

  function unsentWork() {
    const note = document.getElementById("note");
    return note && note.value.trim() ? ` Your note “${note.value.trim()}” was not sent.` : "";
  }

  function end() {
    ended = true;
    const login = `/accounts/login/?next=${encodeURIComponent(location.pathname)}`;
    banner.textContent =
      `You were logged out after ${Math.round(idleSeconds / 60)} minutes without activity.` +
      `${unsentWork()} Reviews you had not sent were not saved. `;
    const link = document.createElement("a");
    link.href = login;
    link.textContent = "Log in again";
    banner.appendChild(link);
    banner.hidden = false;
  }

  function warn(secondsLeft) {
    banner.textContent = `You will be logged out in ${Math.ceil(secondsLeft)} s without activity. `;
    const stay = document.createElement("button");
    stay.textContent = "Stay logged in";
    stay.addEventListener("click", async () => {
      const response = await fetch("/accounts/session/", { credentials: "same-origin" });
      if (response.status === 401) end();
      else banner.hidden = true;
    });
    banner.appendChild(stay);
    banner.hidden = false;
  }

  setInterval(() => {
    if (ended) return;
    const secondsLeft = idleSeconds - (Date.now() - lastRequest) / 1000;
    if (secondsLeft <= 0) end();
    else if (secondsLeft <= warnSeconds) {
      if (banner.hidden || !banner.querySelector("button")) warn(secondsLeft);
      else banner.firstChild.textContent =
        `You will be logged out in ${Math.ceil(secondsLeft)} s without activity. `;
    } else banner.hidden = true;
  }, 1000);
})();
