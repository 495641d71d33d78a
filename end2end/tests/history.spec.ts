import { expect, test } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { Server } from "./server";
import { uniqueRoom, watchForErrors } from "./support";

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

async function post(path: string, body: unknown): Promise<any> {
  const response = await server.fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(response.status, `${path} ${await response.clone().text()}`).toBeLessThan(300);
  return response.json();
}

/** Runs SQL on the database the server uses. */
function sql(statement: string): void {
  execFileSync(process.env.PSQL ?? "psql", [process.env.DATABASE_URL ?? "", "-qc", statement], {
    stdio: "inherit",
  });
}

test("history filters by room and kind, pages back and forth, opens an event, and the live view brings a new notice in", async ({ page }) => {
  const errors = watchForErrors(page);
  const base = uniqueRoom("hist");
  for (let n = 1; n <= 55; n++) {
    await post(`/api/rooms/${base}.deploys/events`, { kind: "notice", data: { text: `deploy n${n}` } });
  }
  await post(`/api/rooms/${base}.deploys/events`, { kind: "alert", data: { text: "not a notice" } });

  await page.goto(`${server.url}/history`);
  await expect(page.getByTestId("connection")).toHaveText("live");
  await page.getByLabel("Room").fill(`${base}.*`);
  await page.getByLabel("Kind").selectOption("notice");
  await page.getByRole("button", { name: "Apply" }).click();
  await expect(page).toHaveURL(/room=.*&kind=notice/);
  const rows = page.getByTestId("history").locator("tbody tr");
  await expect(rows).toHaveCount(50);
  await expect(rows.first()).toContainText("deploy n55");
  await expect(page.getByTestId("history")).not.toContainText("not a notice");

  await page.getByRole("link", { name: "Older →" }).click();
  await expect(rows).toHaveCount(5);
  await expect(rows.last()).toContainText("deploy n1");
  await page.getByRole("link", { name: "← Newer" }).click();
  await expect(rows).toHaveCount(50);
  await expect(rows.first()).toContainText("deploy n55");
  await page.goBack();
  await expect(rows).toHaveCount(5);

  await rows.filter({ hasText: "deploy n3" }).getByRole("link", { name: "deploy n3" }).click();
  await expect(page).toHaveURL(new RegExp(`/history/${base.replaceAll(".", "\\.")}\\.deploys/3$`));
  await expect(page.getByTestId("event-json")).toContainText('"text": "deploy n3"');
  await expect(page.getByTestId("neighbours")).toContainText("deploy n2");
  await expect(page.getByTestId("neighbours")).toContainText("deploy n4");

  await page.goto(`${server.url}/history?room=${base}.*&kind=notice`);
  await expect(page.getByTestId("connection")).toHaveText("live");
  await page.getByTestId("live").check();
  await post("/api/notices", { room: `${base}.deploys`, text: "deploy n56", title: "Deploy", tags: ["ci"] });
  await expect(rows.first()).toContainText("Deploy: deploy n56 [ci]");
  await expect(rows).toHaveCount(51);
  expect(errors).toEqual([]);
});

test("a dashboard opened at a past moment plays forward, an alert marker passes, and back to live returns", async ({ page }) => {
  const errors = watchForErrors(page);
  const source = uniqueRoom("replay").replaceAll(".", "-");
  const name = `replay-${Date.now()}`;
  const panels = [{ title: "CPU", kind: "line", source, series: ["cpu"], unit: "percent" }];
  sql(`INSERT INTO dashboards (name, panels) VALUES ('${name}', '${JSON.stringify(panels)}')`);
  const now = Date.now();
  const samples = Array.from({ length: 240 }, (_, i) => ({
    source, series: "cpu", value: 20 + (i % 30), ts: new Date(now - 600_000 + i * 2_500).toISOString(),
  }));
  await post("/api/metrics", samples);
  const alert = await post("/api/rooms/alerts/events", {
    kind: "alert",
    data: {
      text: `CpuHigh firing on ${source}`, type: "transition", rule: 0, source, name: "CpuHigh",
      state: "firing", previous: "pending", value: 49, threshold: 45, severity: "critical",
      summary: "cpu high", since: new Date(now - 240_000).toISOString(),
    },
  });
  // Stored four minutes ago, as if it had fired then.
  sql(`UPDATE events SET ts = now() - interval '4 minutes' WHERE room = 'alerts' AND seq = ${alert.seq}`);

  const at = new Date(now - 360_000).toISOString();
  await page.goto(`${server.url}/d/${name}?range=5m&at=${at}`);
  await expect(page.getByTestId("connection")).toHaveText("live");
  const replay = page.getByTestId("replay");
  await expect(replay.getByTestId("timeline").locator('[data-alert="true"]').first()).toBeAttached();
  await expect(replay.getByRole("slider", { name: "Play head" })).toBeVisible();
  const chart = page.getByTestId("panel").locator("svg");
  await expect(chart.locator(".line")).toHaveAttribute("d", /L/);
  await expect(chart.locator('.marker[data-alert="true"]')).toHaveCount(0);

  const head = async () => Number(await replay.getByTestId("playhead").getAttribute("data-ms"));
  const start = await head();
  await replay.getByLabel("Speed").selectOption("60");
  await replay.getByTestId("play").click();
  // Two minutes of dashboard time at 60×: the alert passes across the chart.
  await expect(chart.locator('.marker[data-alert="true"]')).toHaveCount(1, { timeout: 15_000 });
  expect(await head()).toBeGreaterThan(start + 120_000);
  await replay.getByTestId("play").click();
  console.log(`replay at 60×: ${await replay.getAttribute("data-stalls")} stalls`);

  await replay.getByTestId("back-to-live").click();
  await expect(page).not.toHaveURL(/at=/);
  await expect(page.getByTestId("replay")).toHaveCount(0);
  expect(errors).toEqual([]);
});
