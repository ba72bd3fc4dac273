// Class chat on the watch page: a websocket to /ws/streams/<id>/chat/, reconnecting with
// backoff. Without JavaScript the same form posts to the page and the log is rendered
// by the server. Message bodies are text: they only ever go into textContent.

const MAX_BACKOFF_MS = 15000;

function start(root) {
  const log = root.querySelector("[data-testid=chat-log]");
  const form = root.querySelector("form");
  const input = form.querySelector("input[name=body]");
  const status = root.querySelector("[data-testid=chat-status]");
  const canModerate = root.dataset.canModerate === "1";
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${root.dataset.wsPath}`;
  let socket = null;
  let backoff = 500;

  function say(text) { status.textContent = text; }

  function render(message) {
    if (log.querySelector(`li[data-id="${message.id}"]`)) return;
    log.querySelector("li.empty")?.remove();
    const item = document.createElement("li");
    item.dataset.id = String(message.id);
    if (message.from_instructor) item.classList.add("from-instructor");
    const who = document.createElement("strong");
    who.textContent = message.author;
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = message.body;
    item.append(who, " ", body);
    if (canModerate) {
      const hide = document.createElement("button");
      hide.type = "button";
      hide.className = "link hide";
      hide.textContent = "Hide";
      hide.setAttribute("aria-label", `Hide this message from ${message.author}`);
      hide.addEventListener("click", () => send({ type: "hide", id: message.id }));
      item.append(" ", hide);
    }
    log.append(item);
    while (log.children.length > 200) log.firstElementChild.remove();
    log.scrollTop = log.scrollHeight;
  }

  function send(payload) {
    if (socket?.readyState !== WebSocket.OPEN) { say("Not connected; reconnecting…"); return false; }
    socket.send(JSON.stringify(payload));
    return true;
  }

  function connect() {
    socket = new WebSocket(url);
    socket.addEventListener("open", () => { backoff = 500; say(""); root.dataset.connected = "1"; });
    socket.addEventListener("message", (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (_) { return; }
      if (data.type === "history") { log.replaceChildren(); data.messages.forEach(render); }
      else if (data.type === "message") render(data);
      else if (data.type === "hidden") log.querySelector(`li[data-id="${data.id}"]`)?.remove();
      else if (data.type === "error" || data.type === "closed") say(data.detail);
    });
    socket.addEventListener("close", (event) => {
      delete root.dataset.connected;
      if (event.code === 4403) { say("The chat is for members of this class."); return; }
      if (event.code === 4410) { form.hidden = true; return; }  // class over: its "closed" frame said so
      say("Chat disconnected; reconnecting…");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = input.value.trim();
    if (body && send({ type: "message", body })) input.value = "";
  });
  connect();
}

const root = document.querySelector("[data-testid=chat][data-ws-path]");
if (root) start(root);
