import { expect, test } from "@playwright/test";
import { Server } from "./server";
import { ScratchDatabase, uniqueRoom, watchForErrors } from "./support";

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

async function postNotice(room: string, text: string, to: Server = server): Promise<number> {
  const response = await to.fetch(`/api/rooms/${room}/events`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ kind: "notice", data: { text } }),
  });
  expect(response.status).toBe(201);
  return (await response.json()).seq;
}

test("server-rendered page hydrates, goes live and shows pushed events without a reload", async ({ page }) => {
  const errors = watchForErrors(page);
  const room = uniqueRoom("live");
  expect(await postNotice(room, "stored before the page loaded")).toBe(1);

  // The first response already carries the page's content: no script has run yet.
  const html = await (await server.fetch(`/rooms/${room}`)).text();
  expect(html).toContain("Latest events in");
  expect(html).toContain(room);
  expect(html).toContain("stored before the page loaded");
  expect(html).toContain(">connecting<");

  await page.goto(`${server.url}/rooms/${room}`);
  const badge = page.getByTestId("connection");
  await expect(badge).toHaveText("live");
  await expect(page.getByTestId("watchers")).toHaveText("1 watching");
  // A marker on window survives only if the page is never reloaded.
  await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));

  expect(await postNotice(room, "pushed while watching")).toBe(2);
  const feed = page.getByTestId("feed");
  await expect(feed.locator('[data-seq="2"]')).toContainText("pushed while watching");
  await expect(feed.locator("li")).toHaveCount(2);
  await expect(feed.getByText("stored before the page loaded")).toHaveCount(1);
  expect(await page.evaluate(() => (window as unknown as { marker: number }).marker)).toBe(42);
  await expect(badge).toHaveText("live");

  expect(errors).toEqual([]);
});

/**
 * What the browser logs when a server vanishes: a load cut off by the kill (a module's body among
 * them, whose compiling is then aborted), connections refused while it is down, a frame that raced
 * the close, a 503 from the server starting again (the alert feed reads the open instances, and
 * its code, until it can), and the module loader's failed fetch of that code.
 */
const SERVER_GONE =
  /WebSocket connection to .* failed|Failed to load resource: net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|CONTENT_LENGTH_MISMATCH)|WebAssembly compilation aborted: Network error|Failed to load resource: the server responded with a status of 503|WebSocket is already in CLOSING or CLOSED state|Failed to fetch/;

test("after the server is killed and restarted the page reconnects and shows every missed event once", async ({ page }) => {
  const errors = watchForErrors(page, SERVER_GONE);
  const room = uniqueRoom("restart");
  await postNotice(room, "before the outage");
  await page.goto(`${server.url}/rooms/${room}`);
  const badge = page.getByTestId("connection");
  await expect(badge).toHaveText("live");

  await server.kill();
  await expect(badge).toHaveText("reconnecting");
  await expect(page.locator(".connection-detail")).toContainText("next try");

  // Published while the page had no connection: straight after restart, before it reconnects.
  await server.restart();
  expect(await postNotice(room, "during the outage")).toBe(2);
  expect(await postNotice(room, "also during the outage")).toBe(3);
  await expect(badge).toHaveText("live", { timeout: 40_000 });
  expect(await postNotice(room, "after the outage")).toBe(4);

  const feed = page.getByTestId("feed");
  await expect(feed.locator("li")).toHaveCount(4);
  for (const seq of [1, 2, 3, 4]) {
    await expect(feed.locator(`[data-seq="${seq}"]`)).toHaveCount(1);
  }
  expect(errors).toEqual([]);
});

test("a server that falls silent is noticed and the page goes live again once it answers", async ({ page }) => {
  const errors = watchForErrors(page, SERVER_GONE);
  const room = uniqueRoom("silent");
  await page.goto(`${server.url}/rooms/${room}`);
  const badge = page.getByTestId("connection");
  await expect(badge).toHaveText("live");

  // The connection stays open, but no heartbeat comes: two intervals (2 s here) of silence.
  server.pause();
  try {
    await expect(badge).toHaveText("reconnecting");
  } finally {
    server.resume();
  }
  await expect(badge).toHaveText("live", { timeout: 40_000 });
  expect(await postNotice(room, "after the silence")).toBe(1);
  await expect(page.getByTestId("feed").locator('[data-seq="1"]')).toContainText("after the silence");
  expect(errors).toEqual([]);
});

test("a page open while its room's log starts over (database reset, server restarted) shows the new events", async ({ page }) => {
  const errors = watchForErrors(page, SERVER_GONE);
  const database = new ScratchDatabase(`e2e_reset_${process.pid}`);
  // A wall screen: watching needs no account, which a reset database would no longer have.
  const own = await Server.start({ DATABASE_URL: database.url, WATCHROOM_ANONYMOUS: "viewer" });
  try {
    const room = uniqueRoom("reset");
    for (const text of ["first", "second", "third"]) await postNotice(room, text, own);
    await page.goto(`${own.url}/rooms/${room}`);
    const badge = page.getByTestId("connection");
    await expect(badge).toHaveText("live");
    const feed = page.getByTestId("feed");
    await expect(feed.locator("li")).toHaveCount(3);

    await own.stop();
    database.reset();
    await own.restart();
    own.provision();
    // The new log's seq 1 is below the 3 the page holds: without epochs it would be dropped.
    expect(await postNotice(room, "after the reset", own)).toBe(1);
    await expect(badge).toHaveText("live", { timeout: 40_000 });
    await expect(feed.locator('[data-seq="1"]')).toContainText("after the reset");
    await expect(feed.getByText("third")).toHaveCount(0);
    expect(await postNotice(room, "and on", own)).toBe(2);
    await expect(feed.locator('[data-seq="2"]')).toContainText("and on");
    await expect(feed.locator("li")).toHaveCount(2);
    expect(errors).toEqual([]);
  } finally {
    await own.stop();
    database.drop();
  }
});
