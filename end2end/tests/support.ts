// Helpers the browser tests share.
import type { Page } from "@playwright/test";

export function uniqueRoom(label: string): string {
  return `e2e.${label}.${Date.now()}.${Math.floor(Math.random() * 1e6)}`;
}

/**
 * Collects uncaught page errors and console errors; the test fails if any appear. `expected`
 * names console errors a test provokes on purpose (the browser logs each refused connection).
 */
export function watchForErrors(page: Page, expected?: RegExp): string[] {
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(`pageerror: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && !expected?.test(message.text())) {
      errors.push(`console: ${message.text()}`);
    }
  });
  return errors;
}
