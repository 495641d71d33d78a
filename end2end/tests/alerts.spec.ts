import { expect, test, type Page } from "@playwright/test";
import { Server } from "./server";
import { uniqueRoom, watchForErrors } from "./support";

let server: Server;

test.beforeAll(async () => {
  server = await Server.start();
});

test.afterAll(async () => {
  await server?.stop();
});

async function send(path: string, method: string, body: unknown): Promise<Response> {
  return server.fetch(path, {
    method,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function sample(source: string, value: number) {
  expect((await send("/api/metrics", "POST", [{ source, series: "cpu", value }])).status).toBe(200);
}

/** A critical rule `cpu > 90` on `source` alone. */
async function rule(source: string, name: string) {
  const response = await send("/api/alerts/rules", "POST", {
    name, source, series: "cpu", op: ">", threshold: 90, severity: "critical",
    summary: "{{source}} cpu {{value}}%",
  });
  expect(response.status).toBe(201);
}

async function openSignedIn(page: Page, path: string) {
  await server.signIn(page);
  await page.goto(`${server.url}${path}`);
  await expect(page.getByTestId("connection")).toHaveText("live");
}

test("a firing alert shows on every open page at once, and an acknowledgement on one shows on the other", async ({ browser }) => {
  const source = uniqueRoom("hot").replaceAll(".", "-");
  const name = `cpu hot ${source}`;
  await rule(source, name);
  const [one, two] = [await browser.newPage(), await browser.newPage()];
  const errors = [watchForErrors(one), watchForErrors(two)];
  await openSignedIn(one, "/");
  await openSignedIn(two, "/alerts");
  await expect(two.getByTestId("rule").filter({ hasText: name })).toBeVisible();

  await sample(source, 97);
  for (const page of [one, two]) {
    await expect(page.getByTestId("toast").filter({ hasText: name })).toContainText(`${source} cpu 97%`);
    await expect(page.getByTestId("alert-badge")).toHaveText(/[1-9]\d* firing/);
  }
  // The drawer's list loads when first opened.
  await one.getByTestId("alert-badge").click();
  const drawn = one.getByRole("dialog", { name: "open alerts" }).getByTestId("instance").filter({ hasText: name });
  await expect(drawn).toContainText("firing");
  const listed = two.getByTestId("instance").filter({ hasText: name });
  await expect(listed).toContainText("firing");
  await expect(two.getByTestId("rule").filter({ hasText: name }).locator(".rule-state")).toHaveText("1 firing");

  // Critical: the toast stays until someone acknowledges it, here from the first page.
  await one.getByTestId("toast").filter({ hasText: name }).getByRole("button", { name: "Acknowledge" }).click();
  await expect(two.getByTestId("toast").filter({ hasText: name })).toHaveCount(0);
  await expect(listed).toContainText(`acknowledged by ${server.admin}`);
  await expect(drawn).toContainText(`acknowledged by ${server.admin}`);

  await sample(source, 5);
  await expect(listed).toHaveCount(0);
  await expect(two.getByTestId("rule").filter({ hasText: name }).locator(".rule-state")).toHaveText("ok");
  expect(errors.flat()).toEqual([]);
});

test("an alert firing while the tab is hidden comes as a desktop notification", async ({ page }) => {
  const errors = watchForErrors(page);
  // A hidden tab whose operator allowed notifications; what the page shows is recorded.
  await page.addInitScript(() => {
    Object.defineProperty(document, "hidden", { get: () => true });
    const shown: string[] = [];
    Object.assign(window, {
      shown,
      Notification: class {
        static permission = "granted";
        static requestPermission() {
          return Promise.resolve("granted");
        }
        constructor(title: string) {
          shown.push(title);
        }
      },
    });
  });
  const source = uniqueRoom("hidden").replaceAll(".", "-");
  const name = `hidden hot ${source}`;
  await rule(source, name);
  await openSignedIn(page, "/");
  await sample(source, 98);
  await expect
    .poll(() => page.evaluate(() => (window as unknown as { shown: string[] }).shown))
    .toContain(`FIRING ${name}: ${source} cpu 98%`);
  await sample(source, 2);
  expect(errors).toEqual([]);
});

test("a rule made in the page's form is refused naming its bad field, then stored, listed and edited", async ({ page }) => {
  // The browser logs the refusal the test provokes.
  const errors = watchForErrors(page, /status of 400/);
  await openSignedIn(page, "/alerts");
  const name = `disk ${Date.now()}`;
  await page.getByText("New rule").click();
  const form = page.getByTestId("new-rule").locator("form");
  await form.getByLabel("Name").fill(name);
  await form.getByLabel("Sources").fill("host:*");
  await form.getByLabel("Series").fill('fs.used_pct{mount="/"}');
  await form.getByLabel("Threshold").fill("high");
  await form.getByRole("button", { name: "Create rule" }).click();
  // Refused, naming the field; then made.
  await expect(page.getByRole("alert").filter({ hasText: "threshold" })).toBeVisible();
  await form.getByLabel("Threshold").fill("95");
  await form.getByRole("button", { name: "Create rule" }).click();
  const row = page.getByTestId("rule").filter({ hasText: name });
  await expect(row).toContainText('last(fs.used_pct{mount="/"}) over 1m > 95 on host:*');
  const rules: { name: string }[] = await (await server.fetch("/api/alerts/rules")).json();
  expect(rules.map((r) => r.name)).toContain(name);

  // Edited in place: the form holds the rule as it is, and what it does not show is kept.
  await row.getByText("Edit").click();
  const edit = row.locator("form");
  await expect(edit.getByLabel("Threshold")).toHaveValue(/^95(\.0)?$/);
  await edit.getByLabel("Threshold").fill("97");
  await edit.getByRole("button", { name: "Save rule" }).click();
  await expect(page.getByTestId("rule").filter({ hasText: name })).toContainText('last(fs.used_pct{mount="/"}) over 1m > 97 on host:*');
  expect(errors).toEqual([]);
});

test("the rule editor shows where a rule would have fired over the last day before it is saved", async ({ page }) => {
  const errors = watchForErrors(page);
  // The built-in collector's source, once it has stored a CPU reading.
  await expect
    .poll(async () => ((await (await server.fetch("/api/metrics/sources")).json()) as string[]).some((s) => s.startsWith("host:")))
    .toBe(true);
  await openSignedIn(page, "/alerts");
  await page.getByText("New rule").click();
  const form = page.getByTestId("new-rule").locator("form");
  await form.getByLabel("Name").fill("preview");
  await form.getByLabel("Sources").fill("host:*");
  await form.getByLabel("Series").fill("cpu.total");
  await form.getByLabel("Operator").selectOption(">=");
  await form.getByLabel("Threshold").fill("0");
  await form.getByRole("button", { name: "Preview the last 24 h" }).click();
  const preview = page.getByTestId("backtest");
  // Once per stretch of data: where the collector's samples stop (between servers), a rule's
  // firing ends in no data.
  await expect(preview).toContainText(/would have fired (once|\d+ times)/);
  expect(await preview.locator("rect.fired").count()).toBeGreaterThan(0);
  await form.getByLabel("Threshold").fill("1000");
  await form.getByRole("button", { name: "Preview the last 24 h" }).click();
  await expect(preview).toContainText("would not have fired");
  // Nothing was saved.
  const rules: { name: string }[] = await (await server.fetch("/api/alerts/rules")).json();
  expect(rules.map((r) => r.name)).not.toContain("preview");
  expect(errors).toEqual([]);
});

test("the wall screen turns through its dashboards and shows firing alerts across the top", async ({ page }) => {
  const errors = watchForErrors(page);
  await server.signIn(page);
  // A second dashboard to turn to.
  const second = `wall${Date.now()}`;
  await page.goto(`${server.url}/d/${second}`);
  await page.getByRole("button", { name: "Create it" }).click();
  // Exact: the page that offers to create it names it in its heading too.
  await expect(page.getByRole("heading", { name: second, exact: true })).toBeVisible();

  await page.goto(`${server.url}/wall?boards=host,${second}&every=5s`);
  await expect(page.getByTestId("connection")).toBeHidden();
  await expect(page.getByRole("heading", { name: "host" })).toBeVisible();
  await expect(page.getByRole("heading", { name: second, exact: true })).toBeVisible({ timeout: 15_000 });
  await expect(page.getByRole("heading", { name: "host" })).toBeVisible({ timeout: 15_000 });

  const source = uniqueRoom("wall").replaceAll(".", "-");
  const name = `wall hot ${source}`;
  await rule(source, name);
  await sample(source, 99);
  await expect(page.getByTestId("alert-banner")).toContainText(`${name}: ${source} cpu 99%`);
  await sample(source, 1);
  await expect(page.getByTestId("alert-banner").filter({ hasText: name })).toHaveCount(0);
  expect(errors).toEqual([]);
});
