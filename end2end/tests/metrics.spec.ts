import { expect, test } from "@playwright/test";
import { Server } from "./server";
import { watchForErrors } from "./support";

let server: Server;

test.beforeAll(async () => {
  server = await Server.start();
});

test.afterAll(async () => {
  await server?.stop();
});

test.beforeEach(async ({ page }) => {
  await server.signIn(page);
});

async function postSamples(samples: object[]) {
  const response = await server.fetch("/api/metrics", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(samples),
  });
  expect(response.status).toBe(200);
}

/** The built-in collector's source, once it has stored a CPU reading. */
async function hostSource(): Promise<string> {
  let source: string | undefined;
  await expect
    .poll(async () => {
      const sources: string[] = await (await server.fetch("/api/metrics/sources")).json();
      source = sources.find((s) => s.startsWith("host:"));
      if (!source) return 0;
      const from = new Date(Date.now() - 60_000).toISOString();
      const query = new URLSearchParams({ source, series: "cpu.total", from, buckets: "10" });
      const buckets: unknown[] = await (await server.fetch(`/api/metrics/range?${query}`)).json();
      return buckets.length;
    })
    .toBeGreaterThan(0);
  return source!;
}

test("the Host dashboard arrives with its charts drawn and pushes extend them", async ({ page }) => {
  const errors = watchForErrors(page);
  await hostSource();

  // No script has run on the raw response: the chart's line is already drawn from history.
  const html = await (await server.fetch("/d/host")).text();
  expect(html).toMatch(/<path(?=[^>]*class="line line-0")[^>]* d="[^"]*M[0-9.]+ [0-9.]+ L[0-9.]+ [0-9.]+/);

  await page.goto(`${server.url}/d/host`);
  await expect(page.getByTestId("connection")).toHaveText("live");
  const cpu = page.locator('.panel-line path[data-series="cpu.total"]');
  // The collector pushes every second, and nothing but a push redraws the line without a reload:
  // it changes twice.
  for (let change = 0; change < 2; change++) {
    const before = await cpu.getAttribute("d");
    await expect.poll(() => cpu.getAttribute("d")).not.toBe(before);
  }
  const gauge = page.getByTestId("panel").filter({ has: page.getByRole("heading", { name: "CPU", exact: true }) });
  await expect(gauge.getByTestId("gauge-value")).toHaveText(/^\d+\.\d%$/);

  // The time range selector reloads history at the new span.
  await page.getByRole("link", { name: "1h" }).click();
  await expect(page).toHaveURL(/range=1h/);
  await expect(page.getByRole("link", { name: "1h" })).toHaveAttribute("aria-current", "page");
  await expect(cpu).toHaveAttribute("d", /^M/);
  // A year comes from the hour rollups and the newest raw samples.
  await page.getByRole("link", { name: "1y" }).click();
  await expect(page).toHaveURL(/range=1y/);
  await expect(page.getByRole("link", { name: "1y" })).toHaveAttribute("aria-current", "page");
  await expect(cpu).toHaveAttribute("d", /^M/);

  // The overview tells what the metrics store holds, tier by tier.
  await page.goto(server.url);
  await page.getByText("Metrics storage").click();
  const tiers = page.getByTestId("storage").getByRole("row");
  await expect(tiers).toHaveCount(5);
  await expect(tiers.nth(1)).toContainText("raw");
  await expect(tiers.nth(4)).toContainText("730 d");

  expect(errors).toEqual([]);
});

test("a dashboard made in the page persists, its panel follows samples POSTed for a new source and can be changed in place", async ({ page }) => {
  // The refused panel below is answered 400, which the browser logs.
  const errors = watchForErrors(page, /the server responded with a status of 400/);
  const suffix = `${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  const name = `e2e-${suffix}`;
  const source = `e2e-agent-${suffix}`;

  await page.goto(server.url);
  await expect(page.getByTestId("connection")).toHaveText("live");
  await page.getByLabel("New dashboard").fill(name);
  await page.getByRole("button", { name: "Create" }).click();
  await expect(page).toHaveURL(`${server.url}/d/${name}`);
  await expect(page.getByRole("heading", { name })).toBeVisible();

  await page.getByText("Edit dashboard").click();
  // A refused panel says why and adds nothing.
  await page.getByLabel("Title").fill("Two at once");
  await page.getByLabel("Type").selectOption("gauge");
  await page.getByLabel("Source").fill(source);
  await page.getByLabel("Series (comma-separated)").fill("depth, lag");
  await page.getByRole("button", { name: "Add panel" }).click();
  await expect(page.locator("details.edit > form.panel-form").getByRole("alert")).toContainText("a gauge panel shows one series");
  await expect(page.getByTestId("panel")).toHaveCount(0);

  await page.getByLabel("Title").fill("Queue depth");
  await page.getByLabel("Type").selectOption("stat");
  await page.getByLabel("Source").fill(source);
  await page.getByLabel("Series (comma-separated)").fill("depth");
  await page.getByRole("button", { name: "Add panel" }).click();
  const panel = page.getByTestId("panel").filter({ hasText: "Queue depth" });
  await expect(panel).toBeVisible();

  await page.reload();
  await expect(panel).toBeVisible();
  await expect(page.getByTestId("connection")).toHaveText("live");
  await expect(panel.getByTestId("stat-value")).toHaveText("–");

  for (const value of [7, 42]) await postSamples([{ source, series: "depth", value }]);
  await expect(panel.getByTestId("stat-value")).toHaveText("42");
  await expect(panel.locator(".trend")).toHaveClass(/up/);

  // Changed in place: a refused change says why beside that panel's form, keeps what was typed
  // and changes nothing.
  await panel.getByText("Edit", { exact: true }).click();
  const form = panel.locator("form");
  await form.getByLabel("Type").selectOption("gauge");
  await form.getByLabel("Series (comma-separated)").fill("depth, lag");
  await form.getByRole("button", { name: "Save panel" }).click();
  await expect(panel.getByRole("alert")).toContainText("a gauge panel shows one series");
  await expect(form.getByLabel("Series (comma-separated)")).toHaveValue("depth, lag");
  await expect(panel.getByTestId("stat-value")).toHaveText("42");

  // Now bound to a labelled series, written as Prometheus writes it.
  await form.getByLabel("Title").fill("High queue");
  await form.getByLabel("Series (comma-separated)").fill('depth{queue="high"}');
  await form.getByLabel("Warn at").fill("10");
  await form.getByLabel("Critical at").fill("40");
  await form.getByRole("button", { name: "Save panel" }).click();
  const gauge = page.getByTestId("panel").filter({ hasText: "High queue" });
  await expect(gauge.getByTestId("gauge-value")).toHaveText("–");
  await expect(page.getByTestId("panel")).toHaveCount(1);
  // One event, labelled sample first: had the label been ignored, the gauge would end on 5.
  await postSamples([
    { source, series: "depth", labels: { queue: "high" }, value: 90 },
    { source, series: "depth", value: 5 },
  ]);
  await expect(gauge.getByTestId("gauge-value")).toHaveText("90");
  await expect(gauge.locator(".gauge-fill")).toHaveClass(/critical/);
  await page.reload();
  await expect(gauge.getByTestId("gauge-value")).toHaveText("90");
  await expect(gauge.locator(".gauge-fill")).toHaveClass(/critical/);

  expect(errors).toEqual([]);
});

test("the page is dark by default and a light theme, once chosen, survives a reload", async ({ page }) => {
  const errors = watchForErrors(page);
  await page.goto(server.url);
  const root = page.locator("html");
  await expect(root).toHaveAttribute("data-theme", "dark");
  await expect(page.getByTestId("connection")).toHaveText("live");

  const toggle = page.getByRole("button", { name: "Light theme" });
  await toggle.click();
  await expect(root).toHaveAttribute("data-theme", "light");
  await expect(page.getByRole("button", { name: "Dark theme" })).toHaveAttribute("aria-pressed", "true");

  await page.reload();
  await expect(root).toHaveAttribute("data-theme", "light");
  expect(errors).toEqual([]);
});

test("the overview shows the sources whose name contains the filter, at most 48 of them", async ({ page }) => {
  const errors = watchForErrors(page);
  const prefix = `fleet-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  const names = Array.from({ length: 49 }, (_, i) => `${prefix}-${String(i).padStart(2, "0")}`);
  await postSamples(names.map((source) => ({ source, series: "up", value: 1 })));

  await page.goto(server.url);
  await expect(page.getByTestId("connection")).toHaveText("live");
  await page.getByLabel("Filter sources").fill(`${prefix}-07`);
  await page.getByRole("button", { name: "Filter" }).click();
  await expect(page).toHaveURL(new RegExp(`\\?q=${prefix}-07$`));
  await expect(page.locator("[data-source]")).toHaveCount(1);
  await expect(page.locator(`[data-source="${prefix}-07"]`)).toContainText("up");

  // More matches than a page follows live: the first 48 by name, and a word about the rest.
  await page.goto(`${server.url}/?q=${prefix}`);
  await expect(page.locator("[data-source]")).toHaveCount(48);
  await expect(page.getByTestId("sources-shown")).toHaveText("Showing 48 of 49 sources; filter to find the others.");
  await expect(page.locator(`[data-source="${names[48]}"]`)).toHaveCount(0);
  await expect(page.getByTestId("connection")).toHaveText("live");

  await page.goto(`${server.url}/?q=${prefix}-none`);
  await expect(page.getByText("No source name contains")).toBeVisible();
  expect(errors).toEqual([]);
});
