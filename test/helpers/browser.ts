/**
 * Driving the admin dashboard in Debian's Chromium (playwright-core): the
 * browser's path and flags, logging in, waiting for text, and the layout
 * measurements the layout test makes. Tests skip (never fake) where
 * /usr/bin/chromium is missing.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { startOrigin } from './origin.js';
import type { Origin } from './origin.js';
import type { Service } from './service.js';
import type { TestClient } from './wsClient.js';

export const CHROMIUM = '/usr/bin/chromium';
// We run as root (no sandbox); the rest keeps Chromium from calling out to the internet.
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export const launchChromium = (): Promise<Browser> => chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });

/**
 * The little of the DOM the in-page functions use: this project's TypeScript has
 * no DOM lib. (Page functions are functions, not strings: Playwright polls a
 * string with eval, which the page's Content-Security-Policy rightly refuses.)
 */
export interface Rect {
  left: number;
  right: number;
  top: number;
  bottom: number;
  width: number;
  height: number;
}
export interface PageElement {
  textContent: string | null;
  title: string;
  id: string;
  tagName: string;
  className: string;
  children: ArrayLike<PageElement>;
  dataset: Record<string, string | undefined>;
  getBoundingClientRect(): Rect;
  getAttribute(name: string): string | null;
  closest(selector: string): PageElement | null;
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): ArrayLike<PageElement>;
}
export interface PageGlobals {
  document: { documentElement: { scrollWidth: number }; querySelector(selector: string): PageElement | null; querySelectorAll(selector: string): ArrayLike<PageElement> };
  innerWidth: number;
  innerHeight: number;
  getComputedStyle(element: PageElement): { color: string; display: string };
}

/** Waits until the element's text (trimmed) is `text`. */
export async function waitForText(page: Page, selector: string, text: string, timeout = 30_000): Promise<void> {
  await page.waitForFunction(([sel, want]) => (globalThis as unknown as PageGlobals).document.querySelector(sel)?.textContent?.trim() === want, [selector, text] as [string, string], { timeout });
}

/** Waits until the element's text matches `pattern`; returns the text. */
export async function waitForMatch(page: Page, selector: string, pattern: RegExp, timeout = 30_000): Promise<string> {
  await page
    .waitForFunction(
      ([sel, source, flags]) => new RegExp(source, flags).test((globalThis as unknown as PageGlobals).document.querySelector(sel)?.textContent ?? ''),
      [selector, pattern.source, pattern.flags] as [string, string, string],
      { timeout },
    )
    .catch(async (error: unknown) => {
      // Say what the element said instead: a timeout alone does not.
      const seen = await page.textContent(selector).catch(() => null);
      throw new Error(`${selector} never matched ${String(pattern)}; it says ${JSON.stringify(seen)}`, { cause: error });
    });
  return (await page.textContent(selector)) ?? '';
}

/** Opens the dashboard of `serviceUrl` and connects with `token`; resolves once the stream is live. */
export async function openDashboard(page: Page, serviceUrl: string, token: string): Promise<void> {
  // tsx names the functions a test hands to page.evaluate with its `__name` helper, which the page lacks.
  await page.addInitScript({ content: 'globalThis.__name = (f) => f;' });
  await page.goto(`${serviceUrl}/admin/`);
  await page.fill('#token', token);
  await page.click('#connect');
  await page.waitForSelector('#dashboard:not([hidden])');
  await page.waitForSelector('body[data-link="live"]');
}

/**
 * What is wrong with the layout now, as sentences (none: nothing): the page
 * wider than the viewport, a panel, row or control reaching past the viewport's
 * sides, a table leaving its card, two cells of one task row overlapping, two
 * task rows overlapping.
 */
export function layoutProblems(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const g = globalThis as unknown as PageGlobals;
    const problems: string[] = [];
    const width = g.innerWidth;
    const name = (e: PageElement) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.className ? `.${String(e.className).split(' ').join('.')}` : ''}${e.dataset.url ? `[${e.dataset.url.slice(-30)}]` : ''}`;
    const visible = (r: Rect) => r.width > 0 && r.height > 0;
    if (g.document.documentElement.scrollWidth > width) problems.push(`the page is ${g.document.documentElement.scrollWidth} px wide in a ${width} px viewport`);
    for (const e of Array.from(g.document.querySelectorAll('header, .notice, .panel, .rows > li, table.grid tr, button, input, select, dialog[open]'))) {
      const r = e.getBoundingClientRect();
      if (!visible(r)) continue;
      if (r.left < -0.5 || r.right > width + 0.5) problems.push(`${name(e)} spans ${Math.round(r.left)}–${Math.round(r.right)} px in a ${width} px viewport`);
    }
    for (const table of Array.from(g.document.querySelectorAll('table.grid'))) {
      const card = table.closest('.panel');
      if (!card) continue;
      const t = table.getBoundingClientRect();
      const c = card.getBoundingClientRect();
      if (visible(t) && (t.left < c.left - 0.5 || t.right > c.right + 0.5)) problems.push(`${name(table)} (${Math.round(t.left)}–${Math.round(t.right)}) leaves its card (${Math.round(c.left)}–${Math.round(c.right)})`);
    }
    const overlap = (a: Rect, b: Rect) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 0.5 && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 0.5;
    const rows = Array.from(g.document.querySelectorAll('#tasks > tr'));
    for (const [i, tr] of rows.entries()) {
      const cells = Array.from(tr.children).filter((cell) => visible(cell.getBoundingClientRect()) && (cell.textContent ?? '').trim() !== '');
      for (let a = 0; a < cells.length; a++) {
        for (let b = a + 1; b < cells.length; b++) {
          if (overlap(cells[a]!.getBoundingClientRect(), cells[b]!.getBoundingClientRect())) problems.push(`task row ${i}: cells ${a} and ${b} overlap`);
        }
        // What a cell shows stays in the cell.
        const c = cells[a]!.getBoundingClientRect();
        for (const inner of Array.from(cells[a]!.querySelectorAll('button, .badge'))) {
          const r = inner.getBoundingClientRect();
          if (visible(r) && (r.left < c.left - 0.5 || r.right > c.right + 0.5)) problems.push(`task row ${i}: ${name(inner)} runs out of its cell`);
        }
      }
      const next = rows[i + 1];
      if (next && overlap(tr.getBoundingClientRect(), next.getBoundingClientRect())) problems.push(`task rows ${i} and ${i + 1} overlap`);
    }
    return problems.slice(0, 20);
  });
}

/** Where an element is, or null when it is not shown. */
export function rectOf(page: Page, selector: string): Promise<Rect | null> {
  return page.evaluate((sel) => {
    const e = (globalThis as unknown as PageGlobals).document.querySelector(sel);
    if (!e) return null;
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0 ? { left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height } : null;
  }, selector);
}

/**
 * What a browser test against real services opens, closed after it whatever happens: the origin,
 * the services, the browser, the clients and a temporary folder. Undefined (the
 * test skipped, saying why) where Chromium is not installed.
 */
export async function browserScaffold(t: TestContext, name: string) {
  if (!existsSync(CHROMIUM)) {
    t.skip("Chromium not installed (/usr/bin/chromium): the browser test needs Debian's chromium package");
    return undefined;
  }
  const open: { origin?: Origin; services: Service[]; browser?: Browser; clients: TestClient[] } = { services: [], clients: [] };
  const dir = await mkdtemp(path.join(os.tmpdir(), `coverhelper-${name}-`));
  t.after(async () => {
    open.origin?.release();
    await open.browser?.close();
    await Promise.all(open.clients.map((c) => c.close()));
    for (const service of open.services) await service.stop();
    await open.origin?.close();
    await rm(dir, { recursive: true, force: true });
  });
  const origin = (open.origin = await startOrigin());
  return { open, dir, origin };
}
