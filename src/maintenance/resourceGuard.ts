/**
 * The resource guard: samples disk (covers filesystem), memory and the 5-minute
 * load average, and moves the supervisor's `resources` region to `tardy` while
 * any figure is above its limit, back to `ok` when all are under. The gate is
 * the supervisor's state; this only reports samples to it.
 */
import { systemClock } from '../clock.js';
import type { Clock, ClockTimer } from '../clock.js';
import type { Config } from '../config.js';
import { sampleResources } from './resources.js';
import type { ResourceSample } from './resources.js';

export type ResourceLimits = Pick<Config, 'diskLimit' | 'memLimit' | 'loadLimit'>;

export interface ResourceGuardDeps {
  coversDir: string;
  limits: ResourceLimits;
  /** Called after every sample with the reasons to be tardy (none: ready). */
  report: (reasons: string[]) => void;
  sample?: (coversDir: string) => Promise<ResourceSample>;
  onError?: (error: unknown) => void;
  /** The one clock (default the system's): when samples are taken. */
  clock?: Clock;
}

/** Why a sample is over its limits, one phrase per figure. */
export function overLimits(sample: ResourceSample, limits: ResourceLimits): string[] {
  const reasons: string[] = [];
  if (sample.diskPercent > limits.diskLimit) reasons.push(`disk ${sample.diskPercent}% used > --disk-limit ${limits.diskLimit}%`);
  if (sample.memPercent > limits.memLimit) reasons.push(`memory ${sample.memPercent}% used > --mem-limit ${limits.memLimit}%`);
  if (sample.load5 > limits.loadLimit) reasons.push(`load5 ${sample.load5} > --load-limit ${limits.loadLimit}`);
  return reasons;
}

export class ResourceGuard {
  private limits: ResourceLimits;
  private timer: ClockTimer | undefined;
  private readonly clock: Clock;
  latest: ResourceSample | undefined;

  constructor(private readonly deps: ResourceGuardDeps) {
    this.limits = { ...deps.limits };
    this.clock = deps.clock ?? systemClock;
  }

  /** Takes a sample now and reports it. */
  async sample(): Promise<ResourceSample> {
    const sample = await (this.deps.sample ?? sampleResources)(this.deps.coversDir);
    this.latest = sample;
    this.deps.report(overLimits(sample, this.limits));
    return sample;
  }

  /** Changes limits (takes effect at the next sample). */
  setLimits(limits: Partial<ResourceLimits>): void {
    this.limits = { ...this.limits, ...limits };
  }

  start(intervalMs: number): void {
    this.timer = this.clock.setInterval(() => {
      this.sample().catch((error: unknown) => this.deps.onError?.(error));
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.clock.clearInterval(this.timer);
  }
}
