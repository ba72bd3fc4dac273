// Small helpers shared by the broadcast and watch pages.

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** An error carrying the HTTP status and the server's own words (problem `detail` or text body). */
export class HttpProblem extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.body = body || {};
  }
}

async function problemOf(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      const body = await response.json();
      return new HttpProblem(response.status, body.detail || body.title || `HTTP ${response.status}`, body);
    } catch (_) { /* fall through */ }
  }
  let text = "";
  try { text = (await response.text()).trim(); } catch (_) { /* ignore */ }
  return new HttpProblem(response.status, text || `HTTP ${response.status}`);
}

/** JSON request to the Liveclass API (same origin, session cookie, CSRF header on writes). */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRFToken"] = csrfToken();
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? (method === "GET" ? undefined : "{}") : JSON.stringify(body),
    });
  } catch (err) {
    throw new HttpProblem(0, "Liveclass is unreachable: check your network connection.");
  }
  if (!response.ok) throw await problemOf(response);
  return response.status === 204 ? null : response.json();
}

export { problemOf };

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Exponential backoff with jitter: 1 s, 2 s, 4 s ... capped. */
export function backoff(attempt, capMs = 15000) {
  const base = Math.min(capMs, 1000 * 2 ** Math.max(0, attempt));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

export function formatBitrate(bps) {
  if (!isFinite(bps) || bps <= 0) return "0 kbit/s";
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} Mbit/s` : `${Math.round(bps / 1000)} kbit/s`;
}

export function formatDuration(totalSeconds) {
  const s = Math.max(0, Math.floor(totalSeconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const pad = (n) => String(n).padStart(2, "0");
  if (d > 0) return `${d}d ${pad(h)}:${pad(m)}:${pad(sec)}`;
  return h > 0 ? `${h}:${pad(m)}:${pad(sec)}` : `${pad(m)}:${pad(sec)}`;
}

export function $(root, testid) {
  return root.querySelector(`[data-testid="${testid}"]`);
}
