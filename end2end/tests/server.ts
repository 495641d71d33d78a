// Runs the release server binary for a test and stops it again.
import type { Page } from "@playwright/test";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

// The project root (`import.meta.dirname` would need Node 20.11; Debian's older Node lacks it).
const root = fileURLToPath(new URL("../..", import.meta.url));
const binary = path.join(root, "target", "release", "server");
export const PASSWORD = "correct horse battery";

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

export class Server {
  private child?: ChildProcess;
  /** The admin these tests act as, and its API token; see `provision`. */
  admin = "";
  private token = "";
  private constructor(
    readonly port: number,
    private readonly env: Record<string, string>,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /**
   * Starts the binary on a free port; `env` adds to or overrides its environment. Unless told
   * not to (to see a fresh install), it makes an admin for the tests to act as.
   */
  static async start(env: Record<string, string> = {}, provision = true): Promise<Server> {
    const server = new Server(await freePort(), env);
    await server.restart();
    if (provision) server.provision();
    return server;
  }

  /** Makes an admin (signing in with PASSWORD) and a token for it, with the server's command line. */
  provision(): void {
    this.admin = `e2e-admin-${process.pid}-${Date.now()}`;
    this.command(["user", "create", this.admin, "--role", "admin", "--password-stdin"], `${PASSWORD}\n`);
    this.token = this.command(["token", "create", "--user", this.admin, "--scope", "admin"]).trim();
  }

  /** Runs `server ARGS` against this server's database and returns what it printed. */
  command(args: string[], input = ""): string {
    return execFileSync(binary, args, {
      cwd: root,
      env: { ...process.env, ...this.env, RUST_LOG: "warn" },
      input,
      encoding: "utf8",
    });
  }

  /** `fetch` of a path on this server, as the admin's token. */
  fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${this.token}`);
    return fetch(`${this.url}${path}`, { ...init, headers });
  }

  /** Signs `page`'s browser in as `name` (the admin by default) with the sign-in form's answer. */
  async signIn(page: Page, name = this.admin): Promise<void> {
    const response = await fetch(`${this.url}/login`, {
      method: "POST",
      body: new URLSearchParams({ name, password: PASSWORD }),
      redirect: "manual",
    });
    if (response.status !== 303) throw new Error(`sign-in answered ${response.status}`);
    const [pair] = response.headers.getSetCookie()[0].split(";");
    const [cookie, value] = pair.split("=");
    await page.context().addCookies([{ name: cookie, value, url: this.url }]);
  }

  /** Starts the binary on the same port and waits until it answers. */
  async restart(): Promise<void> {
    if (!process.env.DATABASE_URL) throw new Error("DATABASE_URL must be set (scripts/test sets it)");
    this.child = spawn(binary, [], {
      cwd: root,
      env: {
        ...process.env,
        WATCHROOM_LISTEN: `127.0.0.1:${this.port}`,
        LEPTOS_SITE_ROOT: path.join(root, "target", "site"),
        RUST_LOG: "warn",
        // Short heartbeats, so that a silent server is noticed within seconds.
        WATCHROOM_HEARTBEAT: "1s",
        ...this.env,
      },
      stdio: ["ignore", "inherit", "inherit"],
    });
    for (let attempt = 0; attempt < 200; attempt++) {
      if (this.child.exitCode !== null) throw new Error(`server exited with ${this.child.exitCode}`);
      try {
        if ((await fetch(`${this.url}/healthz`)).ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("server did not answer /healthz within 20 s");
  }

  /** Kills the process without a graceful drain, as a crash would. */
  kill(): Promise<void> {
    return this.signal("SIGKILL");
  }

  /** Freezes the process: its sockets stay open but nothing answers, as with a hung server. */
  pause(): void {
    this.child?.kill("SIGSTOP");
  }

  resume(): void {
    this.child?.kill("SIGCONT");
  }

  /** Stops the process gracefully: sockets close with 1012. */
  stop(): Promise<void> {
    return this.signal("SIGTERM");
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill(signal);
    await exited;
  }
}
