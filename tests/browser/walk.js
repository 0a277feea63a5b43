/*
 * walk.js - the web pages as a person uses them, in headless Chromium:
 * register -> confirm (link from the log) -> sign in -> dashboard
 * (search, revoke a device, switch language) -> sign out, then the
 * admin console: sign in -> dashboard -> sign out, once per locale
 * (en, ru). Screenshots go to ARTIFACT_DIR.
 *
 * Fails (exit 1) on any console error, uncaught page error, CSP
 * violation (securitypolicyviolation event or Chromium's own report),
 * failed request or unexpected page. Run by
 * tests/integration/test_browser.py, which starts the stack and passes:
 *   BASE_URL      the stack's http://127.0.0.1:PORT
 *   STACK_LOG     the stack's log file (development token lines)
 *   ARTIFACT_DIR  where screenshots go
 *   CHROMIUM      the browser binary (default /usr/bin/chromium)
 *   ADMIN_USER, ADMIN_PASS  an administrator in the stack's config.yml
 *
 * Must never: use the network beyond BASE_URL, or leave a browser
 * process behind (every context is closed in finally blocks).
 */
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const BASE = process.env.BASE_URL;
const LOG = process.env.STACK_LOG;
const ART = process.env.ARTIFACT_DIR;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ADMIN_USER = process.env.ADMIN_USER;
const ADMIN_PASS = process.env.ADMIN_PASS;
const ARGS = [
  "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run",
  "--disable-quic", "--disable-dev-shm-usage",
];

const TEXT = {
  en: { register: "Create account", registered: "Check your e-mail",
        confirm: "Confirm", confirmed: "E-mail address confirmed",
        signIn: "Sign in", devices: "My devices", revoke: "Revoke",
        revoked: "The device has been revoked", signOut: "Sign out",
        other: "ru", otherHeading: "Мои устройства",
        adminLogin: "Administrator sign-in", adminDashboard: "Server dashboard" },
  ru: { register: "Зарегистрироваться", registered: "Проверьте почту",
        confirm: "Подтвердить", confirmed: "Адрес подтверждён",
        signIn: "Войти", devices: "Мои устройства", revoke: "Отозвать",
        revoked: "Устройство отозвано", signOut: "Выйти",
        other: "en", otherHeading: "My devices",
        adminLogin: "Вход администратора", adminDashboard: "Сводка сервера" },
};

function fail(msg) {
  throw new Error(msg);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/* The confirm token for email from a "development token" log line
 * (tolerant: any line with the kind, the address and 48 hex digits). */
async function confirmToken(email) {
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    const lines = fs.readFileSync(LOG, "utf8").split("\n");
    for (const line of lines.reverse()) {
      if (!line.includes("development token") || !line.includes("confirm") ||
          !line.toLowerCase().includes(email)) {
        continue;
      }
      const m = line.match(/(?:token=|[\s:])([0-9a-f]{48})\b/);
      if (m) {
        return m[1];
      }
    }
    await sleep(100);
  }
  return fail(`no confirm token for ${email} in ${LOG}`);
}

/* Pairs a device the way the desktop does, so there is one to revoke. */
async function pairDevice(login, password, name) {
  const r = await fetch(`${BASE}/api/client/pair`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ login, password, device_name: name,
                           client_version: "verstak-desktop/v2",
                           vault_id: "browser-vault" }),
  });
  if (r.status !== 200) {
    fail(`pairing failed: ${r.status} ${await r.text()}`);
  }
  return (await r.json()).device_id;
}

/* Collects everything that counts as a page problem. */
function watch(context, problems, locale) {
  context.on("page", (page) => attach(page, problems, locale));
  for (const page of context.pages()) {
    attach(page, problems, locale);
  }
}

function attach(page, problems, locale) {
  page.on("console", (msg) => {
    const t = msg.text();
    if (msg.type() === "error" || /Content Security Policy/i.test(t)) {
      problems.push(`[${locale}] console ${msg.type()}: ${t}`);
    }
  });
  page.on("pageerror", (err) => problems.push(`[${locale}] page error: ${err}`));
  page.on("requestfailed", (req) => {
    problems.push(`[${locale}] request failed: ${req.url()} ${req.failure() &&
                  req.failure().errorText}`);
  });
  page.on("response", (res) => {
    if (res.status() >= 400) {
      problems.push(`[${locale}] HTTP ${res.status()} for ${res.url()}`);
    }
  });
}

/* The securitypolicyviolation event, reported through the console so
 * the listener above sees it. Injected by the browser itself, not as a
 * page script, so it is not subject to the page's CSP. */
const CSP_PROBE = `
  document.addEventListener("securitypolicyviolation", function (e) {
    console.error("CSP violation: " + e.violatedDirective + " " + e.blockedURI);
  });
`;

async function shot(page, locale, name) {
  await page.screenshot({ path: path.join(ART, `${locale}-${name}.png`),
                          fullPage: true });
}

async function expectPath(page, want) {
  const u = new URL(page.url());
  if (u.pathname + u.search !== want) {
    fail(`expected ${want}, at ${u.pathname}${u.search}`);
  }
}

async function expectText(page, text) {
  const body = await page.textContent("body");
  if (!body.includes(text)) {
    fail(`"${text}" not on ${page.url()}`);
  }
}

async function expectLang(page, lang) {
  const got = await page.getAttribute("html", "lang");
  if (got !== lang) {
    fail(`html lang ${got}, wanted ${lang} on ${page.url()}`);
  }
}

async function walk(locale) {
  const t = TEXT[locale];
  const problems = [];
  const stamp = `${locale}${Date.now().toString(36)}`;
  const user = `walker-${stamp}`;
  const email = `${user}@example.org`;
  const password = `pw-${stamp}-secret`;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "vs-chromium-"));
  let context = null;

  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      locale: locale === "ru" ? "ru-RU" : "en-US",
      viewport: { width: 1100, height: 800 },
    });
    await context.addInitScript(CSP_PROBE);
    watch(context, problems, locale);
    const page = context.pages()[0] || await context.newPage();

    // Home -> register.
    await page.goto(`${BASE}/`);
    await expectLang(page, locale);
    await shot(page, locale, "01-home");
    await page.click('a[href="/register"].button');
    await expectPath(page, "/register");
    await page.fill("#username", user);
    await page.fill("#email", email);
    await page.fill("#password", password);
    await shot(page, locale, "02-register");
    await Promise.all([page.waitForNavigation(), page.click(`#register-form button[type=submit]`)]);
    await expectPath(page, "/register/result");
    await expectText(page, t.registered);
    await shot(page, locale, "03-registered");

    // The link from the mail (here: from the log), then its button.
    const token = await confirmToken(email);
    await page.goto(`${BASE}/api/v1/auth/confirm?token=${token}`);
    await shot(page, locale, "04-confirm");
    await Promise.all([page.waitForNavigation(), page.click("#confirm-form button")]);
    await expectPath(page, "/confirm/result");
    await expectText(page, t.confirmed);
    await shot(page, locale, "05-confirmed");

    // A device to revoke later, paired as the desktop app does.
    const deviceName = `Laptop ${stamp}`;
    await pairDevice(email, password, deviceName);
    await pairDevice(user, password, `Desktop ${stamp}`);

    // Sign in.
    await page.goto(`${BASE}/login`);
    await page.fill("#username", user);
    await page.fill("#password", password);
    await shot(page, locale, "06-login");
    await Promise.all([page.waitForNavigation(), page.click("#login-form button")]);
    await expectPath(page, "/dashboard");
    await expectText(page, user);
    await expectText(page, deviceName);
    await shot(page, locale, "07-dashboard");

    // The search filters as you type (app.js).
    await page.fill("#q", `desktop ${stamp}`);
    const hiddenLaptop = await page.locator("li.device", { hasText: deviceName }).isHidden();
    if (!hiddenLaptop) {
      fail("live search did not hide the non-matching device");
    }
    await shot(page, locale, "08-search");
    await page.fill("#q", "");

    // Revoke the laptop with the password.
    const row = page.locator("li.device", { hasText: deviceName });
    await row.locator('input[name="password"]').fill(password);
    await Promise.all([page.waitForNavigation(), row.locator("button.danger").click()]);
    await expectPath(page, "/dashboard?flash=user.deviceRevoked");
    await expectText(page, t.revoked);
    const revokedRow = page.locator("li.device-revoked", { hasText: deviceName });
    if (await revokedRow.count() !== 1) {
      fail("the revoked device is not shown as revoked");
    }
    await shot(page, locale, "09-revoked");

    // The language switch (auto-submits with app.js) and back.
    await Promise.all([page.waitForNavigation(), page.selectOption("#locale-select", t.other)]);
    await expectLang(page, t.other);
    await expectText(page, t.otherHeading);
    await shot(page, locale, "10-switched");
    await Promise.all([page.waitForNavigation(), page.selectOption("#locale-select", "system")]);
    await expectLang(page, locale);

    // Sign out: the session is gone.
    await Promise.all([page.waitForNavigation(), page.click("#logout-button")]);
    await expectPath(page, "/login");
    await shot(page, locale, "11-signed-out");
    await page.goto(`${BASE}/dashboard`);
    await expectPath(page, "/login");

    // The admin console: sign in, the dashboard, sign out.
    await page.goto(`${BASE}/admin/login`);
    await expectLang(page, locale);
    await expectText(page, t.adminLogin);
    await page.fill("#username", ADMIN_USER);
    await page.fill("#password", ADMIN_PASS);
    await shot(page, locale, "12-admin-login");
    await Promise.all([page.waitForNavigation(), page.click("#admin-login-form button")]);
    await expectPath(page, "/admin/dashboard");
    await expectText(page, t.adminDashboard);
    await expectText(page, deviceName);     // newest devices
    await shot(page, locale, "13-admin-dashboard");
    await Promise.all([page.waitForNavigation(), page.click("#admin-logout-button")]);
    await expectPath(page, "/admin/login");
    await shot(page, locale, "14-admin-signed-out");
    await page.goto(`${BASE}/admin/dashboard`);
    await expectPath(page, "/admin/login");
  } finally {
    if (context !== null) {
      await context.close();
    }
    fs.rmSync(profile, { recursive: true, force: true });
  }
  return problems;
}

async function main() {
  if (!BASE || !LOG || !ART || !ADMIN_USER || !ADMIN_PASS) {
    fail("BASE_URL, STACK_LOG, ARTIFACT_DIR, ADMIN_USER and ADMIN_PASS are required");
  }
  fs.mkdirSync(ART, { recursive: true });
  let problems = [];
  for (const locale of ["en", "ru"]) {
    problems = problems.concat(await walk(locale));
    console.log(`walk ${locale}: done`);
  }
  if (problems.length > 0) {
    console.error(problems.join("\n"));
    fail(`${problems.length} problem(s) in the pages`);
  }
  console.log("browser walk: no console errors, no CSP violations");
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
