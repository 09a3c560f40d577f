// The console: plain ES modules served by `recovery-info serve`, no build step. The token is
// kept in this module's memory only (never in storage or a URL); every page is drawn with DOM
// calls and `textContent` (no HTML from data), which the Content-Security-Policy allows without
// `unsafe-inline`.
import { catalogues, language, preferred, setLanguage, t } from "./i18n.js";

const KINDS = ["mobile_phone", "alternate_phone", "office_phone", "email"];
const ROLES = ["self_service", "authentication_admin", "auditor", "dashboard"];

const session = { token: null, claims: null, config: null };

// ---------------------------------------------------------------------------------------------
// DOM helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function main() {
  return document.getElementById("main");
}

function show(...nodes) {
  main().replaceChildren(...nodes.filter((n) => n !== null && n !== undefined && n !== false));
}

function uuid() {
  return crypto.randomUUID();
}

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code || `http_${status}`;
  }
}

async function api(method, path, { body, ifMatch } = {}) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (ifMatch !== undefined) headers["If-Match"] = `"${ifMatch}"`;
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

/// The words of an API error, for a person.
function explain(e) {
  const key = `err_${e.code}`;
  return catalogues.en[key] ? t(key) : t("error_generic", { code: e.code });
}

// ---------------------------------------------------------------------------------------------
// Layout

function header() {
  const select = h(
    "select",
    {
      id: "language",
      onchange: (ev) => {
        setLanguage(ev.target.value);
        render();
      },
    },
    ...Object.keys(catalogues).map((l) =>
      h("option", { value: l, selected: l === language() }, l === "en" ? "English" : "Dansk"),
    ),
  );
  const nav = h(
    "nav",
    { "aria-label": "Main" },
    session.token ? h("a", { href: "#/security-info" }, t("nav_security_info")) : null,
    session.token ? h("a", { href: "#/dashboard" }, t("nav_dashboard")) : null,
    session.token ? h("a", { href: "#/audit" }, t("nav_audit")) : null,
    session.token
      ? h(
          "button",
          {
            type: "button",
            id: "sign-out",
            onclick: () => {
              session.token = null;
              session.claims = null;
              location.hash = "#/sign-in";
            },
          },
          t("nav_sign_out"),
        )
      : h("a", { href: "#/sign-in" }, t("nav_sign_in")),
  );
  const who = session.claims
    ? h("p", { class: "who" }, t("signed_in_as", { subject: session.claims.sub, role: session.claims.roles.join(", ") }))
    : null;
  const bar = document.getElementById("bar");
  bar.replaceChildren(
    ...[
      h("span", { class: "brand" }, t("title")),
      nav,
      who,
      h("label", { for: "language", class: "lang" }, t("language"), " ", select),
    ].filter(Boolean),
  );
}

function field(id, label, input, error) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    h("p", { id: `${id}-error`, class: "error", role: "alert", hidden: !error }, error || ""),
  );
}

/// A form that picks the administrator a page is about (its input `id`), calling `choose`.
function adminChooser(id, value, choose) {
  return h(
    "form",
    {
      id: `choose-${id}`,
      onsubmit: async (ev) => {
        ev.preventDefault();
        await choose(document.getElementById(id).value.trim());
      },
    },
    field(id, t("which_admin"), h("input", { id, value: value || "", autocomplete: "off" })),
    h("button", { type: "submit" }, t("show")),
  );
}

/// Shows `message` beside the field `id` and moves the focus there.
function fieldError(id, message) {
  const p = document.getElementById(`${id}-error`);
  const input = document.getElementById(id);
  p.textContent = message;
  p.hidden = false;
  input.setAttribute("aria-invalid", "true");
  input.setAttribute("aria-describedby", `${id}-error`);
  input.focus();
}


// ---------------------------------------------------------------------------------------------
// Sign-in at the organisation's identity provider: the authorization code with PKCE (S256),
// as a public client. The verifier and the state wait in sessionStorage across the redirect;
// the token itself stays in memory.

function b64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function discovery() {
  const issuer = session.config.oidc.issuer.replace(/\/$/, "");
  const r = await fetch(`${issuer}/.well-known/openid-configuration`);
  return r.json();
}

/// Goes to the identity provider; `stepUp` asks for a fresh sign-in (prompt=login, max_age=0).
async function startOidc(stepUp = false) {
  const meta = await discovery();
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem("pkce", JSON.stringify({ verifier, state, lang: language() }));
  const q = new URLSearchParams({
    response_type: "code",
    client_id: session.config.oidc.client_id,
    redirect_uri: `${location.origin}/`,
    scope: session.config.oidc.scope || "openid",
    code_challenge: challenge,
    code_challenge_method: "S256",
    state,
  });
  if (stepUp) {
    q.set("prompt", "login");
    q.set("max_age", "0");
  }
  location.assign(`${meta.authorization_endpoint}?${q}`);
}

/// Back from the identity provider with `?code=&state=`: the code for a token, then the page
/// without them in its address.
async function finishOidc(params) {
  const saved = JSON.parse(sessionStorage.getItem("pkce") || "null");
  sessionStorage.removeItem("pkce");
  history.replaceState(null, "", "/#/security-info");
  if (!saved || saved.state !== params.get("state")) throw new Error("the sign-in's state does not match");
  setLanguage(saved.lang);
  const meta = await discovery();
  const r = await fetch(meta.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: `${location.origin}/`,
      client_id: session.config.oidc.client_id,
      code_verifier: saved.verifier,
    }),
  });
  if (!r.ok) throw new Error(`the identity provider refused the code (${r.status})`);
  const answer = await r.json();
  session.token = answer.access_token;
  session.claims = await api("GET", "/console/whoami");
  session.admin = session.claims.sub;
}

// ---------------------------------------------------------------------------------------------
// Sign-in (development: the server mints a short-lived token)

function signInPage() {
  if (session.config?.oidc) {
    show(
      h("h1", {}, t("sign_in_heading")),
      session.error ? h("p", { class: "error", role: "alert" }, session.error) : null,
      h("button", { type: "button", id: "oidc-sign-in", class: "primary", onclick: () => startOidc() }, t("sign_in_oidc")),
    );
    return;
  }
  if (!session.config?.dev_sign_in) {
    show(h("h1", {}, t("sign_in_heading")), h("p", {}, t("no_sign_in")));
    return;
  }
  const role = h(
    "select",
    { id: "role", name: "role" },
    ...ROLES.map((r) => h("option", { value: r }, t(`role_${r}`))),
  );
  const form = h(
    "form",
    {
      id: "sign-in",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const data = new FormData(ev.target);
        const chosen = data.get("role");
        const admin = String(data.get("admin")).trim();
        try {
          const answer = await api("POST", "/console/dev-sign-in", {
            body: {
              tenant_id: String(data.get("tenant")).trim(),
              subject: chosen === "self_service" ? admin : String(data.get("subject")).trim(),
              roles: [chosen],
            },
          });
          session.token = answer.token;
          session.claims = answer.claims;
          session.admin = admin;
          location.hash = { dashboard: "#/dashboard", auditor: "#/audit" }[chosen] || "#/security-info";
        } catch (e) {
          fieldError("tenant", explain(e));
        }
      },
    },
    h("p", { class: "banner dev", role: "note" }, t("dev_banner")),
    field("tenant", t("tenant"), h("input", { id: "tenant", name: "tenant", value: uuid(), required: true, autocomplete: "off" })),
    field("role", t("role"), role),
    field("admin", t("admin"), h("input", { id: "admin", name: "admin", value: uuid(), required: true, autocomplete: "off" })),
    field("subject", t("subject"), h("input", { id: "subject", name: "subject", value: "helpdesk", autocomplete: "off" })),
    h("button", { type: "submit", class: "primary" }, t("sign_in")),
  );
  show(h("h1", {}, t("sign_in_heading")), form);
  document.getElementById("tenant").focus();
}

// ---------------------------------------------------------------------------------------------
// Security info: the admin's methods, Add / Change / Remove, and the eligibility banner

const page = { admin: null, view: null, editing: null, adding: false, notice: null, stale: false };

function adminPath(rest = "") {
  return `/v1/tenants/${session.claims.tid}/admins/${page.admin}${rest}`;
}

async function load(position) {
  const q = position ? `?min_position=${encodeURIComponent(position)}` : "";
  const [view, verdict] = await Promise.all([
    api("GET", adminPath(`/methods${q}`)),
    api("GET", adminPath(`/reset-eligibility${q}`)),
  ]);
  page.view = view;
  page.verdict = verdict;
}

function kindsToAdd() {
  const have = new Set((page.view?.methods || []).map((m) => m.kind));
  return KINDS.filter((k) => !have.has(k) && (k !== "alternate_phone" || have.has("mobile_phone")));
}

function valueLabel(kind) {
  return t(kind === "email" ? "value_email" : "value_phone");
}

function banner() {
  const v = page.verdict;
  if (!v) return null;
  if (v.eligible) {
    const methods = v.usable_methods.map((m) => `${t(`kind_${m.kind}`)} (${m.masked_value})`).join(t("and"));
    return h("p", { id: "eligibility", class: "banner ok", role: "status" }, t("eligible", { methods }));
  }
  const missing = v.missing[0] || "another_method";
  return h("p", { id: "eligibility", class: "banner warn", role: "status" }, t(`not_eligible_${missing}`));
}

async function command(run) {
  try {
    const answer = await run();
    page.editing = null;
    page.adding = false;
    page.stale = false;
    page.notice = t("saved");
    await load(answer.position);
    securityInfo();
    return null;
  } catch (e) {
    if (e.code === "version_mismatch") {
      page.stale = true;
      securityInfo();
      return null;
    }
    if (e.code === "step_up_required" && session.config?.oidc) {
      page.stepUp = true;
      securityInfo();
      return null;
    }
    return e;
  }
}

function methodRow(m) {
  const owner = session.claims.sub === page.admin;
  if (page.editing === m.id) {
    const id = `value-${m.id}`;
    const form = h(
      "form",
      {
        class: "edit",
        onsubmit: async (ev) => {
          ev.preventDefault();
          const value = document.getElementById(id).value;
          const e = await command(() =>
            api("PATCH", adminPath(`/methods/${m.id}`), { body: { value }, ifMatch: page.view.version }),
          );
          if (e) fieldError(id, explain(e));
        },
      },
      field(id, valueLabel(m.kind), h("input", { id, name: "value", value: owner ? m.value : "", autocomplete: "off", required: true })),
      h("button", { type: "submit", class: "primary" }, t("save")),
      h("button", { type: "button", onclick: () => { page.editing = null; securityInfo(); } }, t("cancel")),
    );
    return h("li", { class: "method" }, h("h3", {}, t(`kind_${m.kind}`)), form);
  }
  return h(
    "li",
    { class: "method" },
    h("h3", {}, t(`kind_${m.kind}`)),
    h("p", { class: "value" }, owner ? m.value : m.masked_value || "•••"),
    h("button", { type: "button", "aria-label": `${t("change")} ${t(`kind_${m.kind}`)}`, onclick: () => { page.editing = m.id; securityInfo(); document.getElementById(`value-${m.id}`).focus(); } }, t("change")),
    h(
      "button",
      {
        type: "button",
        "aria-label": `${t("remove")} ${t(`kind_${m.kind}`)}`,
        onclick: async () => {
          if (!confirm(t("confirm_remove", { kind: t(`kind_${m.kind}`) }))) return;
          const e = await command(() => api("DELETE", adminPath(`/methods/${m.id}`), { ifMatch: page.view.version }));
          if (e) {
            page.notice = explain(e);
            securityInfo();
          }
        },
      },
      t("remove"),
    ),
  );
}

function addForm() {
  const kinds = kindsToAdd();
  const kind = h(
    "select",
    { id: "add-kind", name: "kind", onchange: (ev) => { document.querySelector('label[for="add-value"]').textContent = valueLabel(ev.target.value); } },
    ...kinds.map((k) => h("option", { value: k }, t(`kind_${k}`))),
  );
  return h(
    "form",
    {
      id: "add",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const data = new FormData(ev.target);
        const e = await command(() =>
          api("POST", adminPath("/methods"), {
            body: { kind: data.get("kind"), value: data.get("value") },
            ifMatch: page.view.version,
          }),
        );
        if (e) fieldError("add-value", explain(e));
      },
    },
    h("h2", {}, t("add_method")),
    field("add-kind", t("kind"), kind),
    field("add-value", valueLabel(kinds[0]), h("input", { id: "add-value", name: "value", autocomplete: "off", required: true })),
    h("button", { type: "submit", class: "primary" }, t("save")),
    h("button", { type: "button", onclick: () => { page.adding = false; securityInfo(); } }, t("cancel")),
  );
}

function securityInfo() {
  const chooser = session.claims.roles.includes("self_service")
    ? null
    : adminChooser("which-admin", page.admin, async (admin) => {
        page.admin = admin;
        await refresh();
      });
  const methods = page.view?.methods || [];
  const stale = page.stale
    ? h("p", { class: "banner warn", role: "alert", id: "stale" }, t("changed_elsewhere"), " ",
        h("button", { type: "button", onclick: () => refresh() }, t("reload")))
    : null;
  const stepUp = page.stepUp
    ? h("p", { class: "banner warn", role: "alert", id: "step-up" }, t("err_step_up_required"), " ",
        h("button", { type: "button", onclick: () => startOidc(true) }, t("sign_in_again")))
    : null;
  show(
    h("h1", {}, t("security_info_heading")),
    h("p", {}, t("security_info_intro")),
    chooser,
    stale,
    stepUp,
    banner(),
    page.notice ? h("p", { class: "notice", role: "status" }, page.notice) : null,
    methods.length ? h("ul", { class: "methods" }, ...methods.map(methodRow)) : h("p", {}, t("no_methods")),
    page.adding
      ? addForm()
      : kindsToAdd().length
        ? h("button", { type: "button", id: "add-method", class: "primary", onclick: () => { page.adding = true; page.notice = null; securityInfo(); document.getElementById("add-kind").focus(); } }, t("add_method"))
        : null,
  );
}

async function refresh() {
  page.stale = false;
  page.notice = null;
  try {
    await load();
  } catch (e) {
    page.notice = explain(e);
  }
  securityInfo();
}

async function securityInfoPage() {
  if (!session.token) {
    location.hash = "#/sign-in";
    return;
  }
  if (!page.admin) page.admin = session.claims.roles.includes("self_service") ? session.claims.sub : session.admin;
  show(h("p", {}, t("loading")));
  await refresh();
}


// ---------------------------------------------------------------------------------------------
// Dashboard: the tenant's events live (SSE over fetch, so that the token goes in a header,
// resumed with Last-Event-ID), and each admin's verdict folded from the stream's
// EligibilityChanged events: counts, reasons, the admins who cannot reset.

const board = { events: [], verdicts: new Map(), lastId: null, state: "connecting", filter: "", abort: null };

/// Reads an SSE body: calls `onEvent({event, data, id})` per message.
async function readSse(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const msg = { event: "message", data: "", id: null };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const [field, ...rest] = line.split(":");
        const v = rest.join(":").replace(/^ /, "");
        if (field === "event") msg.event = v;
        else if (field === "data") msg.data += v;
        else if (field === "id") msg.id = v;
      }
      if (msg.data) onEvent(msg);
    }
  }
}

async function follow() {
  const tenant = session.claims.tid;
  for (;;) {
    if (!session.token || !location.hash.startsWith("#/dashboard")) return;
    board.abort = new AbortController();
    const headers = { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" };
    if (board.lastId) headers["Last-Event-ID"] = board.lastId;
    try {
      const r = await fetch(`/v1/tenants/${tenant}/events/stream?include=eligibility`, {
        headers,
        signal: board.abort.signal,
        cache: "no-store",
      });
      if (r.status === 409) board.lastId = null; // the log was restored: start afresh
      if (!r.ok) throw new Error(String(r.status));
      setState("live");
      await readSse(r, (m) => {
        if (m.id) board.lastId = m.id;
        const data = JSON.parse(m.data);
        if (m.event === "EligibilityChanged") board.verdicts.set(data.admin_id, data);
        else board.events.push(data);
        drawBoard();
      });
    } catch (e) {
      if (e.name === "AbortError") return;
    }
    setState("behind");
    await new Promise((ok) => setTimeout(ok, 1000));
  }
}

function setState(state) {
  board.state = state;
  const el = document.getElementById("stream-state");
  if (el) {
    el.textContent = t(`stream_${state}`);
    el.className = `state ${state}`;
  }
}

function drawBoard() {
  const list = document.getElementById("board");
  if (!list) return;
  const verdicts = [...board.verdicts.values()];
  const blocked = verdicts.filter((v) => !v.eligible);
  const reasons = new Map();
  for (const v of blocked) for (const m of v.missing) reasons.set(m, (reasons.get(m) || 0) + 1);
  const filter = board.filter.trim().toLowerCase();
  const shown = blocked.filter((v) => !filter || v.admin_id.includes(filter) || v.missing.some((m) => t(`missing_${m}`).toLowerCase().includes(filter)));
  list.replaceChildren(
    h("p", { id: "counts" }, t("counts", { eligible: verdicts.length - blocked.length, blocked: blocked.length })),
    h("ul", { id: "reasons" }, ...[...reasons].map(([m, n]) => h("li", {}, t("reason_count", { reason: t(`missing_${m}`), n })))),
    h("h2", {}, t("cannot_reset")),
    h("ul", { id: "blocked" }, ...shown.map((v) => h("li", {}, `${v.admin_id}: ${v.missing.map((m) => t(`missing_${m}`)).join(", ")}`))),
    h("h2", {}, t("feed")),
    h("ol", { id: "feed" }, ...board.events.slice(-50).map(feedLine)),
  );
}

/// One line of the feed: when, what, of which method, by whom (values are masked by the API).
function feedLine(e) {
  const kind = e.data?.kind ? ` ${t(`kind_${e.data.kind}`)}` : "";
  return h("li", {}, `${e.occurred_at} ${e.type}${kind} — ${t("by_actor", { actor: e.actor?.subject || "" })}`);
}

function dashboardPage() {
  if (!session.token) {
    location.hash = "#/sign-in";
    return;
  }
  const filter = h("input", { id: "filter", type: "search", value: board.filter, autocomplete: "off", oninput: (ev) => { board.filter = ev.target.value; drawBoard(); } });
  show(
    h("h1", {}, t("dashboard_heading")),
    h("p", { id: "stream-state", class: `state ${board.state}`, role: "status" }, t(`stream_${board.state}`)),
    field("filter", t("filter"), filter),
    h("section", { id: "board", "aria-live": "polite" }),
  );
  drawBoard();
  if (!board.abort) follow();
}


// ---------------------------------------------------------------------------------------------
// Auditor: an admin's timeline, the view and the verdict as of any point of it, a reveal with
// its reason (recorded by the service), and the history as a JSON Lines download.

const audit = { admin: null, events: [], at: null, view: null, verdict: null, revealed: false };

async function loadHistory(reveal, reason) {
  const base = `/v1/tenants/${session.claims.tid}/admins/${audit.admin}/history`;
  const events = [];
  let after = null;
  for (;;) {
    const q = new URLSearchParams({ limit: "1000" });
    if (after) q.set("after", after);
    if (reveal) {
      q.set("reveal", "true");
      q.set("reason", reason);
    }
    const page = await api("GET", `${base}?${q}`);
    events.push(...page.events);
    if (!page.next_after) break;
    after = page.next_after;
  }
  audit.events = events;
  audit.revealed = reveal;
}

/// The view and the verdict as of an instant (the log's longest prefix stamped at or before it).
async function loadAsOfTime(iso) {
  await loadPast(`as_of=${encodeURIComponent(iso)}`);
  const before = audit.events.filter((e) => e.occurred_at <= iso).length;
  audit.at = before - 1;
  audit.atTime = iso;
}

async function loadAsOf(index) {
  audit.atTime = null;
  const e = audit.events[index];
  audit.at = index;
  if (!e) return;
  await loadPast(`as_of_position=${encodeURIComponent(e.position)}`);
}

/// The view and the verdict at a past point (`query`: as_of or as_of_position).
async function loadPast(query) {
  const path = `/v1/tenants/${session.claims.tid}/admins/${audit.admin}`;
  [audit.view, audit.verdict] = await Promise.all([
    api("GET", `${path}/methods?${query}`),
    api("GET", `${path}/reset-eligibility?${query}`),
  ]);
}

function describe(e) {
  const d = e.data || {};
  const kind = d.kind ? t(`kind_${d.kind}`) : "";
  const value = d.new_value ? `${d.old_value} → ${d.new_value}` : d.value || d.old_value || "";
  return `${kind} ${value}`.trim();
}

function auditView() {
  const n = audit.events.length;
  const slider = n
    ? field(
        "as-of",
        t("as_of"),
        h("input", {
          id: "as-of",
          type: "range",
          min: "0",
          max: String(n - 1),
          value: String(audit.at ?? n - 1),
          "aria-valuetext": audit.events[audit.at ?? n - 1]?.occurred_at,
          onchange: async (ev) => {
            await loadAsOf(Number(ev.target.value));
            auditView();
            document.getElementById("as-of").focus();
          },
        }),
      )
    : null;
  const picker = n
    ? h(
        "form",
        {
          id: "as-of-time",
          onsubmit: async (ev) => {
            ev.preventDefault();
            const local = document.getElementById("as-of-instant").value;
            if (!local) return fieldError("as-of-instant", t("instant_required"));
            await loadAsOfTime(new Date(local).toISOString());
            auditView();
          },
        },
        field("as-of-instant", t("as_of_instant"), h("input", { id: "as-of-instant", type: "datetime-local", step: "0.001" })),
        h("button", { type: "submit" }, t("show")),
      )
    : null;
  const at = audit.events[audit.at];
  const asOf = at
    ? h(
        "section",
        { id: "as-of-view", "aria-live": "polite" },
        h("h2", {}, t("as_of_heading", { time: audit.atTime || at.occurred_at })),
        h("ul", {}, ...(audit.view?.methods || []).map((m) => h("li", {}, `${t(`kind_${m.kind}`)}: ${m.masked_value}`))),
        h("p", { id: "as-of-eligibility" }, audit.verdict?.eligible ? t("as_of_eligible") : t("as_of_not_eligible")),
      )
    : null;
  const reveal = h(
    "form",
    {
      id: "reveal",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const reason = document.getElementById("reason").value.trim();
        if (!reason) {
          fieldError("reason", t("reason_required"));
          return;
        }
        try {
          await loadHistory(true, reason);
          auditView();
        } catch (e) {
          fieldError("reason", explain(e));
        }
      },
    },
    field("reason", t("reason"), h("input", { id: "reason", autocomplete: "off" })),
    h("button", { type: "submit" }, t("reveal")),
  );
  const download = h(
    "button",
    {
      type: "button",
      id: "export",
      onclick: () => {
        const blob = new Blob([audit.events.map((e) => JSON.stringify(e)).join("\n") + "\n"], { type: "application/x-ndjson" });
        const a = h("a", { href: URL.createObjectURL(blob), download: `history-${audit.admin}.jsonl` });
        document.body.append(a);
        a.click();
        a.remove();
      },
    },
    t("export"),
  );
  show(
    h("h1", {}, t("audit_heading")),
    adminChooser("audited", audit.admin, async (admin) => {
      audit.admin = admin;
      await openAudit();
    }),
    audit.revealed ? h("p", { class: "banner warn", role: "status", id: "revealed" }, t("revealed")) : null,
    h("h2", {}, t("timeline")),
    h(
      "ol",
      { id: "timeline" },
      ...audit.events.map((e) =>
        h("li", {}, `${e.occurred_at} ${e.type} ${describe(e)} — ${t("by_actor", { actor: e.actor?.subject || "" })}`),
      ),
    ),
    slider,
    picker,
    asOf,
    n ? reveal : null,
    n ? download : null,
    h("h2", {}, t("verify_heading")),
    h("button", { type: "button", id: "verify", onclick: verifyTenant }, t("verify")),
    h("p", { id: "verify-result", role: "status" }, audit.verified || ""),
  );
}

async function verifyTenant() {
  try {
    const r = await api("GET", `/v1/tenants/${session.claims.tid}/audit/verify`);
    audit.verified = r.intact
      ? t("verify_intact", { events: r.events, streams: r.streams })
      : t("verify_broken", { stream: r.broken.stream || "", version: r.broken.version ?? "", problem: r.broken.problem });
  } catch (e) {
    audit.verified = explain(e);
  }
  auditView();
}

async function openAudit() {
  try {
    await loadHistory(false);
    await loadAsOf(audit.events.length - 1);
  } catch (e) {
    audit.events = [];
    audit.at = null;
  }
  auditView();
}

async function auditPage() {
  if (!session.token) {
    location.hash = "#/sign-in";
    return;
  }
  if (!audit.admin) audit.admin = session.admin;
  await openAudit();
}

// ---------------------------------------------------------------------------------------------
// Routing

function render() {
  header();
  const route = location.hash || "#/sign-in";
  if (!route.startsWith("#/dashboard") && board.abort) {
    board.abort.abort();
    board.abort = null;
  }
  if (route.startsWith("#/security-info")) securityInfoPage();
  else if (route.startsWith("#/dashboard")) dashboardPage();
  else if (route.startsWith("#/audit")) auditPage();
  else signInPage();
}

async function start() {
  setLanguage(preferred(navigator.languages));
  try {
    session.config = await api("GET", "/console/config.json");
  } catch {
    session.config = { dev_sign_in: false };
  }
  const params = new URLSearchParams(location.search);
  if (params.has("code") && session.config.oidc) {
    try {
      await finishOidc(params);
    } catch (e) {
      session.error = e.message;
      location.hash = "#/sign-in";
    }
  }
  window.addEventListener("hashchange", render);
  render();
}

start();
