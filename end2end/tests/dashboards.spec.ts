import { expect, test, type Page } from "@playwright/test";
import { PASSWORD, Server } from "./server";
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

/** Opens `path` and waits for the socket, so the page is hydrated and following. */
async function openLive(page: Page, path: string) {
  await page.goto(`${server.url}${path}`);
  await expect(page.getByTestId("connection")).toHaveText("live");
}

/** The Host dashboard once the collector has pushed a CPU reading onto it. */
async function openHost(page: Page, query = "") {
  await openLive(page, `/d/host${query}`);
  const legend = page.locator(".panel-line").first().locator(".legend .last");
  await expect(legend.first()).not.toHaveText("–");
}

test("charts read at a glance: time labels suit the range, values have gridlines in their unit, legends summarise", async ({ page }) => {
  const errors = watchForErrors(page);
  await openHost(page);
  const cpu = page.getByTestId("panel").filter({ has: page.getByRole("heading", { name: "CPU use" }) });
  const times = () => cpu.getByTestId("time-axis").locator(".x-label").allTextContents();

  // A quarter of an hour: round minutes.
  await expect.poll(async () => (await times()).length).toBeGreaterThanOrEqual(3);
  for (const label of await times()) expect(label).toMatch(/^\d\d:\d\d$/);
  await expect(cpu.locator(".y-label")).toHaveText(["0.0%", "25.0%", "50.0%", "75.0%", "100.0%"]);
  await expect(cpu.locator(".grid")).not.toHaveCount(0);
  await expect(cpu.locator(".band.warn")).toHaveCount(1);
  // The CPU gauge shows the same thresholds as bands around its dial.
  const gauge = page.getByTestId("panel").filter({ has: page.getByRole("heading", { name: "CPU", exact: true }) });
  await expect(gauge.locator(".gauge-band.warn")).toHaveAttribute("d", /^M\d/);
  await expect(gauge.locator(".gauge-band.critical")).toHaveCount(1);
  // One legend row per series: min, max, avg and last, in the panel's unit.
  const row = cpu.locator(".legend tbody tr");
  await expect(row).toHaveCount(1);
  await expect(row.locator("td")).toHaveText([/%$/, /%$/, /%$/, /%$/]);
  const network = page.getByTestId("panel").filter({ has: page.getByRole("heading", { name: "Network" }) });
  await expect(network.locator(".legend tbody tr")).toHaveCount(2);
  await expect(network.locator(".y-label").last()).toHaveText(/\/s$/);
  // At a desktop's width each value stands on one line with its unit ("1.2 GiB", "3.1 KiB/s").
  const linesPerValue = await page.locator(".panel-line .legend td").evaluateAll((cells) =>
    cells.map((cell) => {
      const text = document.createRange();
      text.selectNodeContents(cell);
      return new Set([...text.getClientRects()].map((r) => Math.round(r.top))).size;
    }),
  );
  expect(linesPerValue.length).toBeGreaterThanOrEqual(4 * 6);
  expect(linesPerValue).toEqual(linesPerValue.map(() => 1));

  // A week: days; a year: months (and the year where January falls).
  await page.getByRole("link", { name: "7d", exact: true }).click();
  await expect(page).toHaveURL(/range=7d/);
  await expect.poll(times).toContainEqual(expect.stringMatching(/^\d{1,2} [A-Z][a-z]{2}$/));
  for (const label of await times()) expect(label).toMatch(/^\d{1,2} [A-Z][a-z]{2}$/);
  await page.getByRole("link", { name: "1y", exact: true }).click();
  await expect(page).toHaveURL(/range=1y/);
  await expect.poll(times).toContainEqual(expect.stringMatching(/^([A-Z][a-z]{2}|\d{4})$/));
  for (const label of await times()) expect(label).toMatch(/^([A-Z][a-z]{2}|\d{4})$/);
  expect(errors).toEqual([]);
});

test("the crosshair moves on every chart at once, and a paused dashboard keeps its pushes for the resume", async ({ page }) => {
  const errors = watchForErrors(page);
  await openHost(page);
  const charts = page.locator(".panel-line");
  const count = await charts.count();
  expect(count).toBeGreaterThanOrEqual(4);

  const first = charts.first().locator("svg");
  const box = (await first.boundingBox())!;
  await page.mouse.move(box.x + box.width * 0.8, box.y + box.height / 2);
  // Every chart draws the cursor and reads its values at the same instant.
  await expect(page.locator(".panel-line .cursor")).toHaveCount(count);
  const readouts = await page.locator(".panel-line .readout").allTextContents();
  const instant = readouts[0].split(" — ")[0];
  expect(instant).toMatch(/^\d\d:\d\d:\d\d UTC$/);
  for (const readout of readouts) expect(readout.startsWith(`${instant} — `)).toBe(true);
  await page.mouse.move(0, 0);
  await expect(page.locator(".panel-line .cursor")).toHaveCount(0);

  const cpu = page.locator('.panel-line path[data-series="cpu.total"]');
  await page.getByRole("button", { name: "Pause live" }).click();
  await expect(page.getByRole("button", { name: "Resume live" })).toHaveAttribute("aria-pressed", "true");
  const frozen = await cpu.getAttribute("d");
  // The collector pushes every second: three of them arrive while paused, and none is drawn.
  await page.waitForTimeout(3_000);
  expect(await cpu.getAttribute("d")).toBe(frozen);
  await page.getByRole("button", { name: "Resume live" }).click();
  await expect(cpu).not.toHaveAttribute("d", frozen!);
  expect(errors).toEqual([]);
});

test("a drag across a chart zooms every panel into that span, a double-click zooms out, and the address holds it", async ({ page }) => {
  const errors = watchForErrors(page);
  await openHost(page);
  const svg = page.locator(".panel-line").first().locator("svg");
  const box = (await svg.boundingBox())!;
  const y = box.y + box.height / 2;
  await page.mouse.move(box.x + box.width * 0.3, y);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.6, y, { steps: 5 });
  await expect(page.locator(".selection")).toHaveCount(1);
  await page.mouse.up();

  await expect(page).toHaveURL(/from=.*&to=/);
  const span = () => {
    const url = new URL(page.url());
    return [Date.parse(url.searchParams.get("from")!), Date.parse(url.searchParams.get("to")!)];
  };
  const [from, to] = span();
  // A third of the quarter hour, give or take the pointer's pixels.
  expect(to - from).toBeGreaterThan(4 * 60_000);
  expect(to - from).toBeLessThan(5 * 60_000);
  await expect(page.getByTestId("zoomed")).toContainText("UTC");
  // Every panel is drawn over the span, still: no pause button, as nothing is followed.
  await expect(page.getByRole("button", { name: "Pause live" })).toHaveCount(0);
  const times = await page.locator(".panel-line").nth(1).getByTestId("time-axis").locator(".x-label").allTextContents();
  expect(times.length).toBeGreaterThanOrEqual(2);

  await page.reload();
  await expect(page.getByTestId("zoomed")).toBeVisible();
  await page.locator(".panel-line").first().locator("svg").dblclick();
  await expect.poll(() => span()[0]).toBeLessThan(from);
  const [wider, widerTo] = span();
  expect(widerTo - wider).toBe(2 * (to - from));

  await page.getByRole("link", { name: "Back to live" }).click();
  await expect(page).toHaveURL(/range=15m/);
  await expect(page).not.toHaveURL(/from=/);
  await expect(page.getByRole("button", { name: "Pause live" })).toBeVisible();
  expect(errors).toEqual([]);
});

test("one dashboard serves many sources: the picker switches source, the address keeps it, and JSON comes and goes", async ({ page }) => {
  // The refused import is answered 400, which the browser logs.
  const errors = watchForErrors(page, /the server responded with a status of 400/);
  const suffix = `${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  const name = `e2e-vars-${suffix}`;
  const [first, second] = ["a", "b"].map((s) => `e2e-var-${suffix}-${s}`);
  const post = async (source: string, value: number) => {
    const response = await server.fetch("/api/metrics", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify([{ source, series: "load", value }]),
    });
    expect(response.status).toBe(200);
  };
  await post(first, 11);
  await post(second, 22);
  const put = await server.fetch(`/api/dashboards/${name}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      name,
      variables: [{ name: "host", sources: `e2e-var-${suffix}-*` }],
      panels: [{ title: "Load", kind: "stat", source: "$host", series: ["load"] }],
    }),
  });
  expect(put.status).toBe(201);

  await openLive(page, `/d/${name}`);
  const stat = page.getByTestId("panel").getByTestId("stat-value");
  await expect(stat).toHaveText("11");
  const picker = page.getByLabel("$host");
  await expect(picker.locator("option")).toHaveText([first, second]);
  await picker.selectOption(second);
  await expect(page).toHaveURL(new RegExp(`host=${second}`));
  await expect(stat).toHaveText("22");
  await expect(page.getByTestId("panel").locator(".source")).toHaveText(second);

  // The address round-trips: a reload (or a link) shows the same source, and follows it live.
  await page.getByRole("link", { name: "1h", exact: true }).click();
  await expect(page).toHaveURL(new RegExp(`range=1h.*host=${second}|host=${second}.*range=1h`));
  await page.reload();
  await expect(page.getByTestId("connection")).toHaveText("live");
  await expect(page.getByLabel("$host")).toHaveValue(second);
  await expect(stat).toHaveText("22");
  await post(second, 33);
  await expect(stat).toHaveText("33");

  // Export is the API's JSON; an import that is wrong names the field and changes nothing.
  const exported = page.getByRole("link", { name: "Export JSON" });
  await expect(exported).toHaveAttribute("href", `/api/dashboards/${name}`);
  const json = await (await server.fetch(`/api/dashboards/${name}`)).json();
  expect(json.variables[0].name).toBe("host");
  json.panels[0].kind = "pie";
  await page.getByText("Edit dashboard").click();
  await page.getByLabel("Dashboard JSON").fill(JSON.stringify(json));
  await page.getByRole("button", { name: "Import" }).click();
  await expect(page.locator("form.import").getByRole("alert")).toContainText("panels[0].kind: unknown variant `pie`");
  json.panels[0].kind = "gauge";
  json.panels[0].title = "Load now";
  await page.getByLabel("Dashboard JSON").fill(JSON.stringify(json));
  await page.getByRole("button", { name: "Import" }).click();
  await expect(page.getByRole("heading", { name: "Load now" })).toBeVisible();
  await expect(page.getByTestId("gauge-value")).toHaveText("33");
  expect(errors).toEqual([]);
});

test("screenshots of the Host dashboard, dark and light, desktop and mobile", async ({ page }) => {
  const errors = watchForErrors(page);
  for (const [width, height] of [[1280, 900], [390, 844]]) {
    await page.setViewportSize({ width, height });
    for (const theme of ["dark", "light"]) {
      await page.addInitScript((t) => localStorage.setItem("theme", t), theme);
      await openHost(page);
      await expect(page.locator("html")).toHaveAttribute("data-theme", theme);
      // Panels stack on a phone: nothing is wider than the screen.
      for (const box of await page.getByTestId("panel").evaluateAll((all) => all.map((p) => p.getBoundingClientRect().right))) {
        expect(box).toBeLessThanOrEqual(width + 1);
      }
      expect(await page.evaluate(() => document.scrollingElement!.scrollWidth)).toBeLessThanOrEqual(width);
      await page.screenshot({ path: `test-results/screens/host-${theme}-${width}.png`, fullPage: true });
    }
  }
  expect(errors).toEqual([]);
});

test("the header leads to every section, the dashboard list finds one by a part of its name, and the rooms list leads to a room", async ({ page }) => {
  const errors = watchForErrors(page);
  const name = `e2e-find-${Date.now()}`;
  const created = await server.fetch(`/api/dashboards/${name}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, panels: [] }),
  });
  expect(created.status).toBe(201);
  const room = `e2e.rooms.${Date.now()}`;
  const published = await server.fetch(`/api/rooms/${room}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ kind: "notice", data: { text: "listed" } }),
  });
  expect(published.status).toBe(201);
  await openLive(page, "/alerts");
  const nav = page.getByRole("navigation", { name: "sections" });
  await expect(nav.getByRole("link", { name: "Alerts" })).toHaveAttribute("aria-current", "page");
  await nav.getByRole("link", { name: "Dashboards" }).click();
  await expect(page).toHaveURL(`${server.url}/`);
  await expect(page.getByTestId("connection")).toHaveText("live");
  const list = page.locator(".dashboard-list li:visible");
  // The overview's data comes after the client-side navigation.
  await expect.poll(() => list.count()).toBeGreaterThan(1);
  await page.getByLabel("Search dashboards").fill(name.slice(4));
  await expect(list).toHaveCount(1);
  await list.getByRole("link").click();
  await expect(page.getByRole("heading", { name })).toBeVisible();

  await nav.getByRole("link", { name: "Rooms" }).click();
  await expect(page).toHaveURL(`${server.url}/rooms`);
  await expect(nav.getByRole("link", { name: "Rooms" })).toHaveAttribute("aria-current", "page");
  await page.getByLabel("Filter rooms").fill(room);
  await page.getByRole("button", { name: "Filter" }).click();
  await expect(page).toHaveURL(`${server.url}/rooms?q=${room}`);
  const rooms = page.getByTestId("rooms").locator("tbody tr");
  await expect(rooms).toHaveCount(1);
  await expect(rooms.locator("td").nth(1)).toHaveText("1");
  await rooms.getByRole("link", { name: room }).click();
  await expect(page.getByRole("heading", { name: `Latest events in ${room}` })).toBeVisible();
  await expect(page.getByTestId("feed")).toContainText("listed");
  expect(errors).toEqual([]);
});

test("a table sorts its series, a stat bars its thresholds, a logs panel lists its source's notices live, and the keyboard arranges the grid", async ({ page }) => {
  const errors = watchForErrors(page);
  const suffix = `${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  const name = `e2e-grid-${suffix}`;
  const source = `e2e-grid-${suffix}`;
  const samples = [["queue.a", 5], ["queue.b", 50], ["queue.c", 20]].map(([series, value]) => ({ source, series, value }));
  const posted = await server.fetch("/api/metrics", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(samples),
  });
  expect(posted.status).toBe(200);
  const put = await server.fetch(`/api/dashboards/${name}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      name,
      panels: [
        { title: "Queues", kind: "table", source, series: ["queue.a", "queue.b", "queue.c"], thresholds: { warn: 10, critical: 40 } },
        { title: "Events", kind: "logs", source, series: [] },
        { title: "Deepest", kind: "stat", source, series: ["queue.b"], thresholds: { warn: 10, critical: 40 } },
      ],
    }),
  });
  expect(put.status).toBe(201);
  // The table's and the logs' code, which hydrates their buttons; the page goes live without it.
  const code = page.waitForResponse(/\/pkg\/split_rare_panels\./);
  await openLive(page, `/d/${name}`);
  await (await code).finished();

  const table = page.getByTestId("panel").filter({ hasText: "Queues" });
  const names = table.locator("tbody th");
  await expect(names).toHaveText(["queue.a", "queue.b", "queue.c"]);
  await expect(table.locator("tbody td")).toHaveText(["5", "50", "20"]);
  await expect(table.locator("tbody td").nth(1)).toHaveClass(/critical/);
  await table.getByRole("button", { name: "Value" }).click();
  await expect(names).toHaveText(["queue.a", "queue.c", "queue.b"]);
  await expect(table.getByRole("columnheader", { name: "Value" })).toHaveAttribute("aria-sort", "ascending");
  await table.getByRole("button", { name: "Value" }).click();
  await expect(names).toHaveText(["queue.b", "queue.c", "queue.a"]);

  // A stat draws its thresholds as a bar, marking where its value stands: 50 past critical 40,
  // on a bar ending at 50 (a quarter past critical).
  const bands = page.getByTestId("stat-bands");
  await expect(bands).toHaveAttribute("title", "warning from 10, critical from 40");
  await expect(bands.locator(".ok")).toHaveAttribute("style", /^width: 20\.0%;?$/);
  await expect(bands.locator(".warn")).toHaveAttribute("style", /^width: 60\.0%;?$/);
  await expect(bands.locator(".critical")).toHaveAttribute("style", /^width: 20\.0%;?$/);
  await expect(bands.locator(".at")).toHaveAttribute("style", /^left: 100\.0%;?$/);
  await page.getByTestId("panel").filter({ hasText: "Deepest" }).screenshot({ path: "test-results/screens/stat-bands.png" });

  const logs = page.getByTestId("logs");
  const notice = await server.fetch(`/api/rooms/metrics:${source}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ kind: "notice", data: { text: "queue drained", level: "warning" } }),
  });
  expect(notice.status).toBe(201);
  await expect(logs.locator("li")).toHaveCount(1);
  await expect(logs.locator("li")).toContainText("queue drained");

  // Arranged from the keyboard: the table moves after the logs, then widens to the whole row.
  await expect(page.getByTestId("panel").first()).toContainText("Queues");
  const press = async (button: string) => {
    const panel = page.getByTestId("panel").filter({ hasText: "Queues" });
    // The panel's editor stays open across the reload an edit brings, where the panel stays put.
    if (!(await panel.locator("details.panel-edit").evaluate((d) => (d as HTMLDetailsElement).open))) {
      await panel.getByLabel("Edit panel Queues").focus();
      await page.keyboard.press("Enter");
    }
    await panel.getByRole("button", { name: `${button}: Queues` }).focus();
    await page.keyboard.press("Enter");
  };
  await press("Move later");
  await expect(page.getByTestId("panel").first()).toContainText("Events");
  const moved = page.getByTestId("panel").filter({ hasText: "Queues" });
  await expect(moved).toHaveAttribute("data-width", "2");
  await press("Wider");
  await expect(moved).toHaveAttribute("data-width", "3");
  await press("Wider");
  await expect(moved).toHaveAttribute("data-width", "4");
  const [row, panel] = await Promise.all([
    page.locator(".panels").boundingBox(),
    moved.boundingBox(),
  ]);
  expect(Math.round(panel!.width)).toBe(Math.round(row!.width));
  expect(errors).toEqual([]);
});

test("the site's files are named by their content's hash and kept a year; the sign-in page links the same stylesheet", async ({ page }) => {
  await openLive(page, "/");
  const stylesheet = await page.locator('link[rel="stylesheet"]').getAttribute("href");
  expect(stylesheet).toMatch(/^\/pkg\/watchroom\.[A-Za-z0-9_-]+\.css$/);
  const wasm = await page.evaluate(() =>
    performance.getEntriesByType("resource").map((e) => new URL(e.name).pathname).find((p) => p.endsWith(".wasm")),
  );
  expect(wasm).toMatch(/^\/pkg\/watchroom\.[A-Za-z0-9_-]+\.wasm$/);
  for (const path of [stylesheet!, wasm!]) {
    const response = await server.fetch(path);
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
  }
  const login = await (await fetch(`${server.url}/login`)).text();
  expect(login).toContain(`href="${stylesheet}"`);
});

test("a viewer's first page hydrates with one wasm and then loads only the alert feed's; a page off the dashboards' path loads its own code when first opened", async ({ page }) => {
  const errors = watchForErrors(page);
  // A viewer: the dashboards' editor, which only editors see, does not come either.
  const viewer = `e2e-viewer-${Date.now()}`;
  server.command(["user", "create", viewer, "--role", "viewer", "--password-stdin"], `${PASSWORD}\n`);
  await server.signIn(page, viewer);
  const wasm = () =>
    page.evaluate(() =>
      performance.getEntriesByType("resource").map((e) => new URL(e.name).pathname).filter((p) => p.endsWith(".wasm")),
    );
  await openLive(page, "/d/host");
  await expect.poll(wasm).toContainEqual(expect.stringMatching(/^\/pkg\/split_alert_feed\./));
  const loaded = await wasm();
  expect(loaded[0]).toMatch(/^\/pkg\/watchroom\.[A-Za-z0-9_-]+\.wasm$/);
  for (const path of loaded.slice(1)) {
    expect(path).toMatch(/^\/pkg\/(split_alert_feed\.|chunk_)/);
  }
  await page.getByRole("navigation", { name: "sections" }).getByRole("link", { name: "Alerts" }).click();
  await expect(page.getByRole("heading", { name: "Alerts", level: 1 })).toBeVisible();
  await expect.poll(wasm).toContainEqual(expect.stringMatching(/^\/pkg\/split_alerts_route\./));
  expect(errors).toEqual([]);
});

test("an editor's dashboard hydrates without waiting for the editor's code, which then makes the server's forms answer in place", async ({ page }) => {
  // The refused save below is answered 400, which the browser logs.
  const errors = watchForErrors(page, /the server responded with a status of 400/);
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  await page.route(/\/pkg\/split_dashboard_editor\./, async (route) => {
    await held;
    await route.continue();
  });
  await openHost(page);
  // Hydrated while the editor's module is held: the socket is live, pausing works, and the
  // editor is there as the server rendered it.
  const pause = page.locator("button.pause");
  await pause.click();
  await expect(pause).toHaveText("Resume live");
  await pause.click();
  await expect(pause).toHaveText("Pause live");
  const panel = page.getByTestId("panel").first();
  await expect(panel.locator("details.panel-edit form.panel-form")).toHaveCount(1);

  const came = page.waitForResponse(/\/pkg\/split_dashboard_editor\./);
  release();
  await (await came).finished();
  await panel.getByText("Edit", { exact: true }).click();
  const form = panel.locator("form.panel-form");
  await form.getByLabel("Warn at").fill("lots");
  await form.getByRole("button", { name: "Save panel" }).click();
  // Answered in place, what was typed kept: the form was hydrated, not posted by the browser.
  await expect(panel.getByRole("alert")).toContainText("warn must be a number");
  await expect(form.getByLabel("Warn at")).toHaveValue("lots");
  await expect(page).toHaveURL(`${server.url}/d/host`);
  expect(errors).toEqual([]);
});

test("a page whose code does not come at first (the server restarting) opens once it comes, opened from another or first", async ({ page }) => {
  const errors = watchForErrors(page, /Failed to load resource|Failed to fetch/);
  /** Refuses the alerts page's module `times` times, then lets it through; counts the asks. */
  const refuse = async (times: number) => {
    let asked = 0;
    await page.unrouteAll();
    await page.route(/\/pkg\/split_alerts_route\./, (route) => (asked++ < times ? route.abort() : route.continue()));
    return () => asked;
  };
  const alertsHeading = page.getByRole("heading", { name: "Alerts", level: 1 });

  await openLive(page, "/d/host");
  let asked = await refuse(2);
  await page.getByRole("navigation", { name: "sections" }).getByRole("link", { name: "Alerts" }).click();
  await expect.poll(asked).toBeGreaterThan(2);
  await expect(alertsHeading).toBeVisible();
  await expect(page.getByTestId("connection")).toHaveText("live");

  // Opened first, the page is drawn by the server and its header goes live at once; the page
  // itself hydrates once its module comes: then its rule form's preview answers in the page.
  asked = await refuse(1);
  await page.goto(`${server.url}/alerts`);
  await expect(alertsHeading).toBeVisible();
  await expect(page.getByTestId("connection")).toHaveText("live");
  await expect.poll(asked).toBeGreaterThan(1);
  const form = page.getByTestId("new-rule");
  await form.locator("summary").click();
  await expect(async () => {
    await form.getByRole("button", { name: "Preview the last 24 h" }).click();
    await expect(form.getByRole("alert").or(form.getByTestId("backtest"))).toBeVisible({ timeout: 1_000 });
  }).toPass();
  expect(errors).toEqual([]);
});

test("time from navigation to the first live value on the Host dashboard (printed, for docs/benchmarks.md)", async ({ page }) => {
  await openHost(page);
  const cpu = page.locator('.panel-line path[data-series="cpu.total"]');
  const timings: string[] = [];
  for (let run = 0; run < 3; run++) {
    const start = Date.now();
    await page.goto(`${server.url}/d/host`);
    const painted = await cpu.getAttribute("d");
    const firstPaint = Date.now() - start;
    await expect(page.getByTestId("connection")).toHaveText("live", { timeout: 10_000 });
    const live = Date.now() - start;
    // The collector pushes each second: the first push after the socket opened redraws the line.
    await expect(cpu).not.toHaveAttribute("d", painted!, { timeout: 10_000 });
    timings.push(`drawn ${firstPaint} ms, live ${live} ms, first pushed value ${Date.now() - start} ms`);
  }
  console.log(`navigation → Host dashboard: ${timings.join("; ")}`);
});
