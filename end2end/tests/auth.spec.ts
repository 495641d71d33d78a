import { expect, test } from "@playwright/test";
import { PASSWORD, Server } from "./server";
import { ScratchDatabase, uniqueRoom, watchForErrors } from "./support";

let server: Server;

test.beforeAll(async () => {
  server = await Server.start();
});

test.afterAll(async () => {
  await server?.stop();
});

/** What the browser logs when a socket is refused or cut. */
const SOCKET_REFUSED =
  /WebSocket connection to .* failed|Failed to load resource: the server responded with a status of 401|WebSocket is already in CLOSING or CLOSED state/;

test("a first visit leads to setup, then to a live dashboard, and signing in again after signing out", async ({ page }) => {
  // The refused sign-in answers 401, which the browser reports.
  const errors = watchForErrors(page, /the server responded with a status of 401/);
  const database = new ScratchDatabase(`e2e_setup_${process.pid}`);
  const fresh = await Server.start({ DATABASE_URL: database.url }, false);
  try {
    await page.goto(`${fresh.url}/d/host`);
    await expect(page).toHaveURL(/\/setup$/);
    await page.getByLabel("Name").fill("first-admin");
    await page.getByLabel(/Password/).fill(PASSWORD);
    await page.getByRole("button", { name: "Create and sign in" }).click();
    await expect(page.getByTestId("account")).toContainText("first-admin · admin");

    await page.goto(`${fresh.url}/d/host`);
    await expect(page.getByTestId("connection")).toHaveText("live");
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect(page).toHaveURL(/\/login$/);
    await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();

    await page.goto(`${fresh.url}/d/host`);
    await expect(page).toHaveURL(/\/login\?next=/);
    await page.getByLabel("Name").fill("first-admin");
    await page.getByLabel("Password").fill("not the password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert")).toHaveText("Wrong name or password.");
    await page.getByLabel("Name").fill("first-admin");
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page).toHaveURL(/\/d\/host$/);
    await expect(page.getByTestId("connection")).toHaveText("live");
    expect(errors).toEqual([]);
  } finally {
    await fresh.stop();
    database.drop();
  }
});

test("signing out in one tab closes the socket of another", async ({ browser }) => {
  const context = await browser.newContext();
  const watching = await context.newPage();
  const errors = watchForErrors(watching, SOCKET_REFUSED);
  await server.signIn(watching);
  await watching.goto(`${server.url}/rooms/${uniqueRoom("signout")}`);
  const badge = watching.getByTestId("connection");
  await expect(badge).toHaveText("live");

  const other = await context.newPage();
  await other.goto(server.url);
  await other.getByRole("button", { name: "Sign out" }).click();
  await expect(other).toHaveURL(/\/login$/);
  // The session is gone: the open socket is closed and cannot come back.
  await expect(badge).toHaveText("reconnecting");
  expect(errors).toEqual([]);
  await context.close();
});

test("a viewer sees no edit controls and a forged change is refused", async ({ page }) => {
  const errors = watchForErrors(page, /Failed to load resource: the server responded with a status of 403/);
  const viewer = `e2e-viewer-${Date.now()}`;
  server.command(["user", "create", viewer, "--role", "viewer", "--password-stdin"], `${PASSWORD}\n`);
  // Where the overview's form sends a new dashboard, as an editor's page has it.
  const overview = await (await server.fetch("/")).text();
  const create = overview.match(/action="(\/api\/create_dashboard[^"]*)"/)?.[1];
  expect(create).toBeDefined();

  await server.signIn(page, viewer);
  await page.goto(server.url);
  await expect(page.getByTestId("account")).toContainText(`${viewer} · viewer`);
  await expect(page.getByRole("heading", { name: "Dashboards" })).toBeVisible();
  await expect(page.getByLabel("New dashboard")).toHaveCount(0);
  await page.goto(`${server.url}/d/host`);
  await expect(page.getByTestId("panel").first()).toBeVisible();
  await expect(page.getByText("Edit dashboard")).toHaveCount(0);
  await expect(page.getByRole("button", { name: /Delete panel/ })).toHaveCount(0);

  const status = await page.evaluate(async (path) => {
    const response = await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
      body: "name=forged-by-viewer",
    });
    return response.status;
  }, create!);
  expect(status).toBe(403);
  const names = await (await server.fetch("/")).text();
  expect(names).not.toContain("forged-by-viewer");
  expect(errors).toEqual([]);
});

test("settings make a token shown once that works until it is revoked, and list the session", async ({ page }) => {
  const errors = watchForErrors(page);
  await server.signIn(page);
  // The page's own code, which hydrates its forms: before that a click posts the plain form, and
  // the token is made but not shown. The header goes live without waiting for it.
  const code = page.waitForResponse(/\/pkg\/split_settings_route\./);
  await page.goto(`${server.url}/settings/tokens`);
  await expect(page.getByTestId("sessions").locator("li").first()).toBeVisible();
  await expect(page.getByTestId("connection")).toHaveText("live");
  await (await code).finished();

  await page.getByLabel("Name").fill("e2e job");
  await page.getByLabel("Scopes").fill("publish:e2e.*");
  await page.getByLabel("Expires after").fill("1d");
  await page.getByRole("button", { name: "Create token" }).click();
  const shown = page.getByTestId("new-token");
  await expect(shown).toHaveText(/^wr_[0-9a-f]{64}$/);
  const token = (await shown.textContent())!;
  const post = (room: string) =>
    fetch(`${server.url}/api/rooms/${room}/events`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ kind: "notice", data: { text: "from a job" } }),
    });
  expect((await post(uniqueRoom("job"))).status).toBe(201);
  expect((await post("elsewhere")).status).toBe(403);

  const listed = page.getByTestId("tokens").locator("li", { hasText: "e2e job" });
  await expect(listed).toContainText("publish:e2e.*");
  await listed.getByRole("button", { name: "Revoke token e2e job" }).click();
  await expect(listed).toContainText("revoked");
  expect((await post(uniqueRoom("job"))).status).toBe(401);
  expect(errors).toEqual([]);
});
