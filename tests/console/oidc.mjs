// The console's sign-in at an identity provider (the authorization code with PKCE) and its
// step-up, in headless Chromium: sign in, add a phone, wait until the sign-in is too old for a
// write, be asked to sign in again, do so, and write. Exits non-zero with the first failed
// expectation.
//
//   node oidc.mjs BASE_URL WAIT_SECONDS SCREENSHOT_DIR
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [base, wait, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const expect = (ok, what) => {
  if (!ok) throw new Error(`expected: ${what}`);
};
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const problems = [];
try {
  const page = await (await browser.newContext({ locale: "en-US" })).newPage();
  page.on("pageerror", (e) => problems.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text());
  });
  const tokenInUrl = [];
  page.on("framenavigated", (f) => {
    if (/access_token|eyJ[A-Za-z0-9_-]{10,}/.test(f.url())) tokenInUrl.push(f.url());
  });
  await page.goto(base + "/");
  await page.click("#oidc-sign-in");
  await page.locator("text=No methods yet.").waitFor();
  expect(!page.url().includes("code="), `the code leaves the address: ${page.url()}`);
  expect((await page.locator(".who").innerText()).includes("(self_service)"), "signed in, self-service");
  await page.click("#add-method");
  await page.selectOption("#add-kind", "mobile_phone");
  await page.fill("#add-value", "+45 20 12 34 56");
  await page.click('#add button[type="submit"]');
  await page.locator("li.method .value", { hasText: "+4520123456" }).waitFor();

  // The sign-in grows too old for a write: the console asks for a fresh one.
  await page.waitForTimeout(Number(wait) * 1000);
  await page.click("#add-method");
  await page.selectOption("#add-kind", "email");
  await page.fill("#add-value", "jane@example.org");
  await page.click('#add button[type="submit"]');
  await page.locator("#step-up").waitFor();
  await page.screenshot({ path: `${shots}/step-up.png`, fullPage: true });
  await page.click("#step-up button");
  await page.locator("li.method .value", { hasText: "+4520123456" }).waitFor();
  await page.click("#add-method");
  await page.selectOption("#add-kind", "email");
  await page.fill("#add-value", "jane@example.org");
  await page.click('#add button[type="submit"]');
  await page.locator("#eligibility.ok").waitFor();
  expect(tokenInUrl.length === 0, `no token in an address: ${tokenInUrl}`);
  expect(problems.length === 0, `no errors: ${problems}`);
  console.log(JSON.stringify({ ok: true }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e.message || e), problems }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
