// The dashboard through a restart of the service: it shows that it is behind while the service
// is gone, reconnects with Last-Event-ID when it is back, and shows what happened meanwhile
// and after, each event once, in order. Talks to its test on stdin/stdout: prints "ready" when
// the dashboard is live, waits for "restarted", prints its result.
//
//   node restart.mjs BASE_URL
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [base] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const expect = (ok, what) => {
  if (!ok) throw new Error(`expected: ${what}`);
};
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
async function add(token, tenant, admin, kind, value) {
  const r = await fetch(`${base}/v1/tenants/${tenant}/admins/${admin}/methods`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ kind, value }),
  });
  expect(r.status === 201, `an add (${r.status})`);
}
try {
  const page = await (await browser.newContext({ locale: "en-US" })).newPage();
  await page.goto(base + "/");
  await page.locator("#sign-in").waitFor();
  const tenant = await page.inputValue("#tenant");
  const admin = crypto.randomUUID();
  await page.selectOption("#role", "dashboard");
  await page.click('#sign-in button[type="submit"]');
  await page.locator("#stream-state.live").waitFor();
  const minted = await fetch(`${base}/console/dev-sign-in`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ tenant_id: tenant, subject: "helpdesk-1", roles: ["authentication_admin"] }),
  });
  const token = (await minted.json()).token;
  await add(token, tenant, admin, "mobile_phone", "+45 20 12 34 56");
  await page.locator("#feed li").first().waitFor();
  console.log("ready");
  await page.locator("#stream-state.behind").waitFor({ timeout: 30000 });
  expect((await page.locator("#stream-state").innerText()).startsWith("Behind"), "it says it is behind");
  const next = await lines.next();
  expect(next.value === "restarted", `the test restarted the service (${next.value})`);
  await add(token, tenant, admin, "email", "jane@example.org");
  await page.locator("#feed li").nth(1).waitFor({ timeout: 30000 });
  await page.locator("#stream-state.live").waitFor();
  const feed = await page.locator("#feed li").evaluateAll((ls) => ls.map((l) => l.textContent.split(" ").slice(1, 3).join(" ")));
  expect(JSON.stringify(feed) === JSON.stringify(["MethodAdded Phone", "MethodAdded Email"]), `each event once, in order: ${feed}`);
  expect((await page.locator("#counts").innerText()) === "Eligible: 1. Cannot reset: 0.", "the verdict after the restart");
  console.log(JSON.stringify({ ok: true }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e.message || e) }));
  process.exitCode = 1;
} finally {
  await browser.close();
  process.exit();
}
