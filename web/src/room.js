// The test room: talk to a persona over Pipecat's SmallWebRTC transport and watch the call's books.
import { PipecatClient } from "@pipecat-ai/client-js";
import { SmallWebRTCTransport, WavMediaManager } from "@pipecat-ai/small-webrtc-transport";
import { api, bars, readable, roomConfig, signIn, SERVICE_COLOURS, usd } from "../static/common.js";

const $ = (id) => document.getElementById(id);
let client = null;
let callId = null;
let costTimer = null;
let warningsShown = 0;
let config = null;

function say(role, text) {
  const last = $("transcript").lastElementChild;
  if (role === "bot" && last?.classList.contains("bot")) {
    last.textContent += ` ${text}`; // the persona's sentences of one turn share a bubble
    $("transcript").scrollTop = $("transcript").scrollHeight; // a growing bubble stays in view
    return;
  }
  const line = document.createElement("div");
  line.className = `turn ${role}`;
  line.textContent = text;
  $("transcript").append(line);
  $("transcript").scrollTop = $("transcript").scrollHeight;
}

const LIMIT_NAMES = { per_call: "per-call", daily: "daily", monthly: "monthly" };

// What happened when, for whoever debugs the room (and for its browser tests).
window.roomLog = [];

function status(text) {
  $("status").textContent = text;
  window.roomLog.push({ event: "status", text, at: performance.now() });
}

// "Say hello" only once the persona can hear you: when its greeting starts (or, for a persona with
// no greeting, a moment after it is ready). Speech before that could be lost.
const NO_GREETING_WAIT_MS = 4000;
let readyForYou = false;

function sayHello() {
  if (!readyForYou) {
    readyForYou = true;
    status("Connected: say hello");
  }
}

async function showCost() {
  if (!callId) return;
  const cost = await api(`/calls/${callId}/cost`);
  $("total").textContent = usd(cost.total_usd);
  $("limit").textContent = `of ${usd(cost.limit_usd)} (${LIMIT_NAMES[cost.limit_kind] ?? "per-call"} limit)`;
  const pct = Math.min(cost.used_pct, 100);
  $("budget-fill").style.width = `${pct}%`;
  const threshold = config.budget.warning_threshold_pct;
  $("budget-marker").style.left = `${threshold}%`;
  $("budget-bar").className = pct >= 100 ? "budget cutoff" : pct >= threshold ? "budget warn" : "budget";
  $("budget-state").textContent = pct >= 100 ? "Cut off: the persona says goodbye" :
    pct >= threshold ? `Warning spoken at ${threshold}%` : `${pct.toFixed(1)}% used`;
  // The parts add up to the total: services, the carrier's minutes so far, and the card fee (payments on only).
  const parts = Object.entries(cost.services).map(([s, v]) => [s, v.cost_usd]);
  if (Number(cost.provisional_carrier_usd) > 0) parts.push(["carrier (so far)", cost.provisional_carrier_usd]);
  if (Number(cost.stripe_fee_usd) > 0) parts.push(["card fee", cost.stripe_fee_usd]);
  bars($("services"), parts, { colour: (s) => SERVICE_COLOURS[s] ?? "#999" });
  // Budget warnings the persona has said, in the transcript where they were said.
  for (const text of (cost.warnings ?? []).slice(warningsShown)) say("notice", text);
  warningsShown = Math.max(warningsShown, (cost.warnings ?? []).length);
  if (!cost.live && costTimer) {
    clearInterval(costTimer);
    costTimer = null;
    await showMemories();
  }
}

function provenance(fact) {
  // Where the persona got it: the call (and the words), or you, through the API.
  const on = fact.updated_at ? new Date(fact.updated_at).toLocaleDateString() : "";
  const where = fact.call_id ? `learned in your call of ${on}` : `set by ${fact.source} on ${on}`;
  const before = fact.history && fact.history.length ? `; was "${fact.history[0].value}"` : "";
  return `(${where}${before})`;
}

async function showMemories() {
  const personaId = $("persona").value;
  const memories = await api(`/personas/${personaId}/memories`);
  const list = $("memories");
  list.replaceChildren();
  for (const [category, facts] of Object.entries(memories.facts)) {
    for (const fact of facts) {
      const item = document.createElement("li");
      item.innerHTML = `<span class="cat"></span> <b></b>: <span class="val"></span> <span class="src"></span>` +
        ` <button>Delete</button>`;
      item.querySelector(".cat").textContent = category.replace("_", " ");
      item.querySelector("b").textContent = fact.key;
      item.querySelector(".val").textContent = fact.value;
      item.querySelector(".src").textContent = provenance(fact);
      if (fact.said) item.title = `You said: "${fact.said}"`;
      item.querySelector("button").onclick = async () => {
        await api(`/personas/${personaId}/memories/${encodeURIComponent(fact.key)}?category=${category}`,
          { method: "DELETE" });
        await showMemories();
      };
      list.append(item);
    }
  }
  for (const call of memories.recent_calls.slice(0, 3)) {
    const item = document.createElement("li");
    item.className = "summary";
    item.textContent = `Call: ${call.summary}`;
    list.append(item);
  }
  if (!list.children.length) list.textContent = "Nothing yet: talk a little, then hang up.";
}

async function connect() {
  $("connect").disabled = true;
  $("transcript").replaceChildren();
  readyForYou = false;
  await signIn($("user").value);
  config.budget = await api("/user/budget");
  status("Connecting…");
  client = new PipecatClient({
    // The Wav media manager uses the browser's own microphone APIs; the default one loads a remote
    // bundle, which a machine without internet (or a privacy-minded user) cannot fetch.
    transport: new SmallWebRTCTransport({ mediaManager: new WavMediaManager() }),
    enableMic: true,
    enableCam: false,
    callbacks: {
      onConnected: () => status("Connected: the persona is getting ready…"),
      onBotReady: () => setTimeout(sayHello, NO_GREETING_WAIT_MS),
      onBotStartedSpeaking: () => {
        window.roomLog.push({ event: "bot-started-speaking", at: performance.now() });
        sayHello();
      },
      onTrackStarted: (track, participant) => {
        if (track.kind === "audio" && !participant?.local) {
          $("bot-audio").srcObject = new MediaStream([track]);
          $("bot-audio").play().catch(() => {});
        }
      },
      onDisconnected: () => {
        status("Call ended");
        $("connect").disabled = false;
        $("hangup").disabled = true;
        setTimeout(showCost, 1500);
      },
      onUserTranscript: (data) => data.final && say("user", data.text),
      // Each sentence arrives as "new", then as spoken progress: show it once.
      onBotOutput: (data) => data.aggregated_by !== "word" && (data.spoken_status ?? "new") === "new"
        && say("bot", data.text),
      // A fatal error ends the call and says so; others (a retried vendor, a skipped frame) are logged only.
      onError: (message) => {
        const data = message.data ?? message;
        window.roomLog.push({ event: "error", data, at: performance.now() });
        if (data.fatal) status(`Error: ${data.message ?? data.error ?? "the call failed"}`);
        else console.warn("room: non-fatal error", data);
      },
    },
  });
  const started = await fetch("/start", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${sessionStorage.getItem("cmb.token")}` },
    body: JSON.stringify({ body: { persona_id: $("persona").value } }),
  });
  const session = await started.json();
  if (!started.ok) {
    status(`Could not start: ${readable(session)}`);
    $("connect").disabled = false;
    return;
  }
  callId = session.sessionId;
  warningsShown = 0;
  $("call-id").textContent = callId;
  const auth = new Headers({ Authorization: `Bearer ${sessionStorage.getItem("cmb.token")}` });
  await client.connect({ webrtcRequestParams: { endpoint: `/sessions/${callId}/api/offer`, headers: auth } });
  $("hangup").disabled = false;
  costTimer = setInterval(() => showCost().catch(() => {}), 1000);
}

async function hangUp() {
  await client?.disconnect();
}

async function main() {
  config = await roomConfig();
  for (const user of config.users) $("user").add(new Option(`${user.display_name || user.id}`, user.id));
  for (const persona of config.personas) $("persona").add(new Option(persona.name, persona.id));
  const labels = {
    "whisper-local": "Whisper on this machine", "piper-local": "Piper on this machine",
    "script-local": "offline demo script (no LLM key: canned replies)",
    "openai-compatible-local": "your local LLM server (LLM_BASE_URL)",
    "llama-local": "a small model in this process (LOCAL_LLM)",
  };
  $("engines").textContent = Object.entries(config.engines)
    .map(([k, v]) => `${k.toUpperCase()}: ${labels[v] ?? v}`).join(" · ")
    + (Object.values(config.engines).some((v) => v.endsWith("-local")) ? " — costs shown are what the vendors would charge" : "");
  $("connect").onclick = () => connect().catch((e) => { status(String(e)); $("connect").disabled = false; });
  $("hangup").onclick = hangUp;
  $("persona").onchange = () => signIn($("user").value).then(showMemories);
  $("user").onchange = () => signIn($("user").value).then(showMemories);
  await signIn($("user").value);
  await showMemories();
}

main().catch((e) => status(String(e)));
