// Shared by the room's pages: the signed-in user's token, API calls, money and small charts.

const TOKEN_KEY = "cmb.token";
const USER_KEY = "cmb.user";

export async function roomConfig() {
  const response = await fetch("/room/config", { headers: adminHeaders() });
  if (response.status === 401 || response.status === 403) {
    const token = prompt("This server is public: paste the operator's ADMIN_TOKEN to use the test room.");
    if (!token) throw new Error("An operator token is needed here.");
    sessionStorage.setItem("cmb.admin", token);
    return roomConfig();
  }
  if (!response.ok) throw new Error(`room config: HTTP ${response.status}`);
  return response.json();
}

function adminHeaders() {
  const admin = sessionStorage.getItem("cmb.admin");
  return admin ? { Authorization: `Bearer ${admin}` } : {};
}

export async function signIn(userId) {
  const response = await fetch("/room/token", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...adminHeaders() },
    body: JSON.stringify({ user_id: userId }),
  });
  if (!response.ok) throw new Error(`sign-in: HTTP ${response.status}`);
  const { token } = await response.json();
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(USER_KEY, userId);
  return token;
}

export function currentUser() {
  return sessionStorage.getItem(USER_KEY);
}

export async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch(`/api${path}`, {
    ...options,
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}`, ...(options.headers || {}) },
  });
  if (response.status === 204) return null;
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(readable(body) || `HTTP ${response.status}`);
  return body;
}

/** An API error as a sentence: FastAPI's validation list ("limit: must be at least $0.50"), or its message. */
export function readable(body) {
  const detail = body?.detail ?? body?.message ?? body;
  if (Array.isArray(detail)) {
    return detail.map((e) => `${(e.loc ?? []).filter((p) => p !== "body").join(".") || "request"}: ${e.msg}`)
      .join("; ");
  }
  if (detail && typeof detail === "object") return detail.message ?? detail.error ?? JSON.stringify(detail);
  return detail ? String(detail) : "";
}

/** Dollars and cents; amounts under a cent keep enough digits to be seen. */
export const usd = (value) => {
  const n = Number(value);
  return `$${n.toFixed(n !== 0 && Math.abs(n) < 0.01 ? 4 : 2)}`;
};

export const SERVICE_COLOURS = {
  twilio: "#e4572e", stt: "#17bebb", llm: "#7768ae", tts: "#ffc914", memory: "#76b041", stripe_fee: "#9aa5b1",
};

/** Horizontal bars: one row per [label, value], scaled to the largest. */
export function bars(container, rows, { format = usd, colour = () => "#7768ae" } = {}) {
  container.replaceChildren();
  const max = Math.max(...rows.map(([, v]) => Number(v)), 1e-9);
  for (const [label, value] of rows) {
    const row = document.createElement("div");
    row.className = "bar-row";
    row.innerHTML = `<span class="bar-label"></span><span class="bar-track"><span class="bar-fill"></span></span>
      <span class="bar-value"></span>`;
    row.querySelector(".bar-label").textContent = label;
    row.querySelector(".bar-value").textContent = format(value);
    const fill = row.querySelector(".bar-fill");
    fill.style.width = `${(100 * Number(value)) / max}%`;
    fill.style.background = colour(label);
    container.append(row);
  }
  if (!rows.length) container.textContent = "Nothing yet.";
}
