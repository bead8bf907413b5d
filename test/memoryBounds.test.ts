/**
 * Memory is bounded per client in both directions and in total, against the
 * real service process: a `/ws` client that stops reading and floods checks,
 * and the two floods of the 2019 port (bytes after `R` while a check runs; many
 * connections holding nearly full URL strings). The service's resident memory
 * (VmRSS of its process) stays within 100 MB of what it was before, and another
 * client is answered within 2 s meanwhile.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import WebSocket from 'ws';
import { checkFrame } from '../client/src/protocol.js';
import { startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';

type TestContext = Parameters<typeof tempDir>[0];
const MB = 1024 * 1024;
const BOUND = 100 * MB;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The service process's resident memory, in bytes. */
function rss(service: Service): number {
  const status = readFileSync(`/proc/${service.child.pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) * 1024;
}

/** Samples the service's RSS every 100 ms until stopped; returns the highest seen. */
function watchRss(service: Service): { stop(): number } {
  let peak = rss(service);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rss(service));
    } catch {
      // the process is gone: the test fails elsewhere
    }
  }, 100);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

const mb = (bytes: number) => `${Math.round(bytes / MB)} MB`;

async function setup(t: TestContext, extra: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const dir = await tempDir(t);
  const service = await startService(['--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--admin-token', 'memory-test-token', ...extra], env);
  t.after(async () => void (await service.kill()));
  return service;
}

/** A fresh `/ws` client's check of a URL answered at once (`skipped`), timed. */
async function probe(service: Service, name: string): Promise<number> {
  const client = await connect(service.wsUrl);
  try {
    const started = performance.now();
    const { done } = await client.check(name, [`ftp://example.com/${name}.jpg`], 20_000);
    assert.equal(done.type, 'done');
    return performance.now() - started;
  } finally {
    client.ws.terminate();
  }
}

/** Warms the service up (a few checks) and reads its RSS. */
async function baseline(service: Service): Promise<number> {
  for (let i = 0; i < 3; i++) await probe(service, `warm${i}`);
  await sleep(500);
  return rss(service);
}

describe('memory per client is bounded', () => {
  it('a /ws client that stops reading: read no further past 4 MiB unsent, closed 1008 when it stays over, RSS bounded, others answered', { timeout: 120_000 }, async (t) => {
    const service = await setup(t, [], { COVERHELPER_TEST_MAX_OVERFULL_MS: '3000' });
    const before = await baseline(service);
    const watch = watchRss(service);

    const flood = new WebSocket(service.wsUrl, { perMessageDeflate: false });
    await new Promise((resolve, reject) => flood.once('open', resolve).once('error', reject));
    flood.on('error', () => undefined);
    const closed = new Promise<number>((resolve) => flood.once('close', (code) => resolve(code)));
    // Stops reading: what the service sends stays in its buffers (and the kernel's).
    flood.pause();
    // 400 checks × 1000 URLs answered at once (`skipped`: not a cover URL), each answer
    // about 330 KB: some 130 MB of output if nothing bounds it.
    const padding = 'p'.repeat(250);
    for (let k = 0; k < 400; k++) {
      flood.send(checkFrame(`flood${k}`, Array.from({ length: 1000 }, (_, i) => `ftp://example.com/${padding}/${k}/${i}.jpg`)));
    }

    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      await sleep(700);
      waits.push(await probe(service, `during${i}`));
    }
    // The service closes the socket once it stays over the bound (3 s here); old code never does.
    const closing = await service
      .waitForLog((line) => /client socket closed: it does not read/.test(line.message), 20_000)
      .catch(() => undefined);
    const peak = watch.stop();
    flood.resume();
    const code = await Promise.race([closed, sleep(15_000).then(() => undefined)]);
    flood.terminate();
    await sleep(1000);
    const after = rss(service);
    t.diagnostic(`RSS before ${mb(before)}, peak ${mb(peak)}, after ${mb(after)}; other client's checks answered in ${waits.map(Math.round).join(', ')} ms`);

    assert.ok(peak - before < BOUND, `RSS grew from ${mb(before)} to ${mb(peak)} during the flood`);
    assert.ok(after - before < BOUND, `RSS ${mb(after)} after the client left (before: ${mb(before)})`);
    for (const wait of waits) assert.ok(wait < 2000, `another client's check took ${Math.round(wait)} ms during the flood`);
    assert.ok(closing, 'the service logs that it closed the socket that does not read');
    assert.equal(code, 1008, 'the socket that does not read is closed with 1008 (policy)');
  });
});
