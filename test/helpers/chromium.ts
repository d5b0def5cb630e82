import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import t from 'tap';

/*
 * Debian's Chromium, driven by playwright-core, for the browser tests: launched once per
 * test file and closed with it, with the demo IdP's sign-in page clicked as a person would.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The browser for this test file; closed when the file's tests end. */
export function launchChromium(): () => Browser {
  let browser: Browser | undefined;
  t.before(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // The flags Debian's Chromium needs here: no sandbox as root, and no background
      // connections to Google's hosts, which this machine's closed network refuses.
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  t.teardown(() => browser?.close());
  return () => {
    if (!browser) throw new Error('Chromium is not running yet: use it inside a test');
    return browser;
  };
}

/** Where this test file's screenshots go: under its own test output directory. */
export function screenshotDir(): string {
  const dir = join(t.testdirName, 'screenshots');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** On the demo IdP's sign-in page: picks `user` and the way they sign in. */
export async function pickUser(page: Page, user: string, method: 'hwk' | 'pwd'): Promise<void> {
  await page.locator(`form:has(input[name=user][value="${user}"]) button[name=method][value=${method}]`).click();
  await page.waitForLoadState('load');
}
