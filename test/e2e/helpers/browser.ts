import type { Locator } from 'playwright-core';
import { expect } from 'vitest';

/** Waits until the element's text (spaces collapsed) contains `text`, or equals it with `exact`. */
export async function hasText(locator: Locator, text: string, opts: { timeout?: number; exact?: boolean } = {}): Promise<void> {
  const poll = expect.poll(async () => ((await locator.first().textContent()) ?? '').replace(/\s+/g, ' ').trim(), { timeout: opts.timeout ?? 5000 });
  if (opts.exact) await poll.toBe(text);
  else await poll.toContain(text);
}
