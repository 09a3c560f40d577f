// The help page's flow in the console, in headless Chromium (Debian's, driven by
// playwright-core): sign in, add a phone typed as people type it, add an email in the tenant's
// domain (the error is shown beside the field), fix it, see "eligible", change the phone,
// remove the email, see "not eligible" with the reason; a change made elsewhere meanwhile
// shows "changed elsewhere — reload"; axe-core finds no serious issue; the Danish page is in
// Danish. Exits non-zero with the first failed expectation.
//
//   node flow.mjs BASE_URL SCREENSHOT_DIR
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { catalogues } from "../../console/i18n.js";

const [base, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

function expect(ok, what) {
  if (!ok) throw new Error(`expected: ${what}`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const problems = [];
const checked = [];

async function newPage(locale) {
  const context = await browser.newContext({ locale });
  const page = await context.newPage();
  page.on("console", (m) => {
    // HTTP errors the page handles (422, 412, the favicon's 404) are logged by Chromium as
    // failed loads; anything else (a CSP refusal, a script error) is a problem.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("request", (r) => {
    if (/eyJ[A-Za-z0-9_-]{10,}/.test(r.url())) problems.push(`a token in a URL: ${r.url()}`);
  });
  page.on("dialog", (d) => d.accept());
  return page;
}

async function axe(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  const serious = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(serious.length === 0, `no serious accessibility issue on ${name}: ${JSON.stringify(serious.map((v) => [v.id, v.nodes.map((n) => n.target)]))}`);
  checked.push(`axe ${name}: ${result.violations.length} minor`);
}

async function mint(tenant, role, subject) {
  const r = await fetch(`${base}/console/dev-sign-in`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ tenant_id: tenant, subject, roles: [role] }),
  });
  expect(r.ok, `a development token (${r.status})`);
  return (await r.json()).token;
}

async function apiCall(token, method, path, body) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  expect(r.ok, `${method} ${path} succeeds (${r.status} ${await r.clone().text()})`);
  return r.json();
}

const text = async (page, selector) => (await page.locator(selector).innerText()).trim();

try {
  // Every string in both catalogues.
  const keys = (l) => JSON.stringify(Object.keys(catalogues[l]).sort());
  expect(keys("en") === keys("da"), "the same strings in English and Danish");

  // The page and its headers: a CSP without anything inline.
  const page = await newPage("en-US");
  const response = await page.goto(base + "/");
  const csp = response.headers()["content-security-policy"] || "";
  expect(csp.includes("script-src 'self'") && !csp.includes("unsafe-inline"), `a strict CSP: ${csp}`);
  await page.locator("#sign-in").waitFor();
  expect((await text(page, ".banner.dev")).startsWith("Development sign-in"), "the development sign-in is marked");
  await axe(page, "sign-in");
  await page.screenshot({ path: `${shots}/sign-in.png`, fullPage: true });

  // The tenant's own domain, set by its authentication admin.
  const tenant = await page.inputValue("#tenant");
  const admin = await page.inputValue("#admin");
  const helpdesk = await mint(tenant, "authentication_admin", "helpdesk-1");
  await apiCall(helpdesk, "PUT", `/v1/tenants/${tenant}/settings`, { domains: ["contoso.com"] });

  // A dashboard of the same tenant, open before anything happens.
  const dash = await newPage("en-US");
  await dash.goto(base + "/");
  await dash.locator("#sign-in").waitFor();
  await dash.fill("#tenant", tenant);
  await dash.selectOption("#role", "dashboard");
  await dash.fill("#subject", "wallboard");
  await dash.click('#sign-in button[type="submit"]');
  await dash.locator("#stream-state.live").waitFor();

  // Sign in as the admin, self-service.
  await page.selectOption("#role", "self_service");
  await page.click('#sign-in button[type="submit"]');
  await page.locator("text=No methods yet.").waitFor();
  expect((await text(page, "#eligibility")).startsWith("Add"), "not eligible at first");

  // Add method: only the kinds the rules allow now (no alternate phone before a phone).
  await page.click("#add-method");
  const kinds = await page.locator("#add-kind option").evaluateAll((os) => os.map((o) => o.value));
  expect(!kinds.includes("alternate_phone") && kinds.includes("mobile_phone"), `the kinds offered: ${kinds}`);
  await page.selectOption("#add-kind", "mobile_phone");
  await page.fill("#add-value", "+45 20 12 34 56");
  await page.click('#add button[type="submit"]');
  await page.locator("li.method .value", { hasText: "+4520123456" }).waitFor();
  expect((await text(page, "#eligibility")) === "Add an alternate email to be able to reset your password.", "the reason: no email");

  // An email in the tenant's domain: the rule's words beside the field, the focus on it.
  await page.click("#add-method");
  await page.selectOption("#add-kind", "email");
  await page.fill("#add-value", "jane@contoso.com");
  await page.click('#add button[type="submit"]');
  await page.locator("#add-value-error:not([hidden])").waitFor();
  expect((await text(page, "#add-value-error")).startsWith("Use an email address outside your organisation"), "the error in words");
  expect(await page.evaluate(() => document.activeElement?.id === "add-value"), "the focus on the field in error");
  await axe(page, "security info with an error");
  await page.screenshot({ path: `${shots}/security-info-error.png`, fullPage: true });
  await page.fill("#add-value", "jane@example.org");
  await page.click('#add button[type="submit"]');
  await page.locator("#eligibility.ok").waitFor();
  const eligible = await text(page, "#eligibility");
  expect(eligible === "You can reset your password with Phone (+45 •• •• •• 56) and Email (j•••@example.org).", `eligible: ${eligible}`);
  expect(!(await page.locator("main").innerText()).includes("null"), "nothing drawn as null");
  await page.screenshot({ path: `${shots}/security-info.png`, fullPage: true });

  // Change the phone.
  await page.click('button[aria-label="Change Phone"]');
  await page.fill('li.method input[name="value"]', "+45 31 12 34 99");
  await page.click('li.method button[type="submit"]');
  await page.locator("li.method .value", { hasText: "+4531123499" }).waitFor();

  // Remove the email: not eligible, and why.
  await page.click('button[aria-label="Remove Email"]');
  await page.locator("#eligibility.warn").waitFor();
  expect((await text(page, "#eligibility")) === "Add an alternate email to be able to reset your password.", "not eligible after the removal");

  // A change elsewhere meanwhile: the next write is refused, the page says so, and reloads.
  await apiCall(helpdesk, "POST", `/v1/tenants/${tenant}/admins/${admin}/methods`, { kind: "office_phone", value: "+45 33 12 34 56" });
  await page.click('button[aria-label="Change Phone"]');
  await page.fill('li.method input[name="value"]', "+45 31 12 34 98");
  await page.click('li.method button[type="submit"]');
  await page.locator("#stale").waitFor();
  expect((await text(page, "#stale")).startsWith("This was changed elsewhere"), "changed elsewhere");
  await page.click("#stale button");
  await page.locator("li.method h3", { hasText: "Office phone" }).waitFor();

  // The dashboard saw each event live, in order, and folds the verdict: one admin, who cannot
  // reset for want of an email.
  await dash.locator("#feed li", { hasText: "MethodAdded" }).nth(2).waitFor();
  const feed = await dash.locator("#feed li").evaluateAll((ls) => ls.map((l) => l.textContent.split(" ")[1]));
  expect(
    JSON.stringify(feed) === JSON.stringify(["TenantDomainsSet", "MethodAdded", "MethodAdded", "MethodChanged", "MethodRemoved", "MethodAdded"]),
    `the feed in order: ${feed}`,
  );
  expect((await text(dash, "#counts")) === "Eligible: 0. Cannot reset: 1.", `the counts: ${await text(dash, "#counts")}`);
  expect((await text(dash, "#blocked")).includes(`${admin}: no alternate email`), "the admin who cannot reset, and why");
  await dash.fill("#filter", "no phone");
  expect((await dash.locator("#blocked li").count()) === 0, "the filter");
  await dash.fill("#filter", "");
  await axe(dash, "dashboard");
  await dash.screenshot({ path: `${shots}/dashboard.png`, fullPage: true });

  // The auditor: the admin's timeline, the view and verdict as of a point of it, a reveal with
  // its reason, the download.
  const aud = await newPage("en-US");
  await aud.goto(base + "/");
  await aud.locator("#sign-in").waitFor();
  await aud.fill("#tenant", tenant);
  await aud.selectOption("#role", "auditor");
  await aud.fill("#admin", admin);
  await aud.fill("#subject", "auditor-1");
  await aud.click('#sign-in button[type="submit"]');
  await aud.locator("#timeline li").nth(4).waitFor();
  const timeline = await aud.locator("#timeline li").evaluateAll((ls) => ls.map((l) => l.textContent.split(" ")[1]));
  expect(JSON.stringify(timeline) === JSON.stringify(["MethodAdded", "MethodAdded", "MethodChanged", "MethodRemoved", "MethodAdded"]), `the timeline: ${timeline}`);
  expect(!(await text(aud, "#timeline")).includes("+4520123456"), "masked by default");
  expect((await text(aud, "#as-of-eligibility")) === "Could not reset the password then.", "now: not eligible");
  await aud.fill("#as-of", "1");
  await aud.locator("#as-of-eligibility", { hasText: "Could reset the password then." }).waitFor();
  const then = await text(aud, "#as-of-view ul");
  expect(then.includes("Phone: +45 •• •• •• 56") && then.includes("Email: j•••@example.org"), `the view back then: ${then}`);
  // The same by an instant: just after the email was added (the browser's local time).
  const addedAt = new Date(Date.parse(JSON.parse(await aud.evaluate(() => JSON.stringify(document.querySelectorAll("#timeline li")[1].textContent.split(" ")[0])))) + 1);
  const local = new Date(addedAt.getTime() - addedAt.getTimezoneOffset() * 60000).toISOString().slice(0, 23);
  await aud.fill("#as-of", "4");
  await aud.locator("#as-of-eligibility", { hasText: "Could not reset" }).waitFor();
  await aud.fill("#as-of-instant", local);
  await aud.click('#as-of-time button[type="submit"]');
  await aud.locator("#as-of-eligibility", { hasText: "Could reset the password then." }).waitFor();
  await aud.click("#verify");
  await aud.locator("#verify-result", { hasText: "Intact" }).waitFor();
  expect((await text(aud, "#verify-result")).startsWith("Intact: the hash chains of 6 events in 2 streams"), `the verification: ${await text(aud, "#verify-result")}`);
  await axe(aud, "audit");
  await aud.screenshot({ path: `${shots}/audit.png`, fullPage: true });
  await aud.click('#reveal button[type="submit"]');
  await aud.locator("#reason-error:not([hidden])").waitFor();
  await aud.fill("#reason", "ticket 42");
  await aud.click('#reveal button[type="submit"]');
  await aud.locator("#revealed").waitFor();
  expect((await text(aud, "#timeline")).includes("+4520123456"), "raw values after the reveal");
  const [download] = await Promise.all([aud.waitForEvent("download"), aud.click("#export")]);
  const exported = readFileSync(await download.path(), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  // The five changes, and the reveal just made (a read of raw values is in the history).
  expect(exported.length === 6 && exported[0].type === "MethodAdded" && exported[5].type === "PiiRevealed", `the download: ${exported.length} lines`);

  // Keyboard only: the sign-out is reachable with Tab.
  await page.keyboard.press("Tab");
  expect(await page.evaluate(() => document.activeElement !== document.body), "the keyboard moves the focus");

  // The Danish page, chosen by the browser's language.
  const da = await newPage("da-DK");
  await da.goto(base + "/");
  await da.locator("#sign-in").waitFor();
  expect((await text(da, "h1")) === "Log på", "the Danish heading");
  expect((await text(da, ".banner.dev")).startsWith("Udviklings-login"), "the Danish banner");
  await da.screenshot({ path: `${shots}/sign-in-da.png`, fullPage: true });
  // And the switch back to English.
  await da.selectOption("#language", "en");
  expect((await text(da, "h1")) === "Sign in", "the language switch");

  expect(problems.length === 0, `no errors in the browser: ${problems.join("; ")}`);
  console.log(JSON.stringify({ ok: true, checked, tenant, admin }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e.message || e), problems }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
