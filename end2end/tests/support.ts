// Helpers the browser tests share.
import type { Page } from "@playwright/test";
import { execFileSync } from "node:child_process";

export function uniqueRoom(label: string): string {
  return `e2e.${label}.${Date.now()}.${Math.floor(Math.random() * 1e6)}`;
}

/**
 * Collects uncaught page errors and console errors; the test fails if any appear. `expected`
 * names errors a test provokes on purpose: the browser logs each refused connection, and a
 * lazily loaded module's loader each fetch that failed, which the browser also reports as
 * unhandled when it fails before the loader awaits it (a panic is a page error of its own:
 * "unreachable").
 */
export function watchForErrors(page: Page, expected?: RegExp): string[] {
  const errors: string[] = [];
  page.on("pageerror", (error) => {
    if (!expected?.test(error.message)) errors.push(`pageerror: ${error.message}`);
  });
  page.on("console", (message) => {
    if (message.type() === "error" && !expected?.test(message.text())) {
      errors.push(`console: ${message.text()}`);
    }
  });
  return errors;
}

/** A database of the test's own beside the one `DATABASE_URL` names, made empty on demand. */
export class ScratchDatabase {
  readonly url: string;

  constructor(private readonly name: string) {
    const admin = new URL(process.env.DATABASE_URL ?? "");
    admin.pathname = `/${name}`;
    this.url = admin.toString();
    this.reset();
  }

  /** Drops and creates the database: everything stored in it is gone, as after a reset. */
  reset(): void {
    this.sql(`DROP DATABASE IF EXISTS ${this.name} WITH (FORCE)`);
    this.sql(`CREATE DATABASE ${this.name}`);
  }

  drop(): void {
    this.sql(`DROP DATABASE IF EXISTS ${this.name} WITH (FORCE)`);
  }

  private sql(statement: string): void {
    execFileSync(process.env.PSQL ?? "psql", [process.env.DATABASE_URL ?? "", "-qc", statement], {
      stdio: "inherit",
      // Without "database … does not exist, skipping" on every first run.
      env: { ...process.env, PGOPTIONS: "-c client_min_messages=warning" },
    });
  }
}
