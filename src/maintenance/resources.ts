/**
 * Samples the figures the resource guard and `/healthz` report: % of the
 * covers filesystem used, % of memory used, and the 5-minute load average.
 */
import { statfs } from 'node:fs/promises';
import os from 'node:os';

export interface ResourceSample {
  diskPercent: number;
  memPercent: number;
  load5: number;
}

const round1 = (n: number) => Math.round(n * 10) / 10;

export async function sampleResources(coversDir: string): Promise<ResourceSample> {
  let diskPercent = 0;
  try {
    const fs = await statfs(coversDir);
    const used = fs.blocks - fs.bfree;
    // As df counts it: used / (used + available to unprivileged users).
    diskPercent = used + fs.bavail > 0 ? (used / (used + fs.bavail)) * 100 : 0;
  } catch {
    diskPercent = 0;
  }
  const total = os.totalmem();
  const memPercent = total > 0 ? ((total - os.freemem()) / total) * 100 : 0;
  return { diskPercent: round1(diskPercent), memPercent: round1(memPercent), load5: round1(os.loadavg()[1] ?? 0) };
}
