/**
 * The colour pass: gives covers stored before colours were kept (a row whose
 * `color` is null) their dominant colour, once, in the background after start.
 *
 * New covers get their colour when they are stored (`processImage`); a row from
 * before has none, and its answers carry `width` and `height` but no `color`
 * until this pass reaches it. The pass:
 * - reads the rows lacking a colour a page at a time, in URL order (each row
 *   is visited once per pass, whatever happens to it);
 * - handles one cover at a time: its stored file (the default variant, which
 *   new covers' colour comes from too) read through the path guard, decoded to
 *   a thumbnail under the shared decode budget, and the colour recorded only
 *   if the row still points at that file and still has none;
 * - is of low priority: it waits `pauseMs` between covers, on the one clock;
 * - skips a cover whose file is missing, too large or not decodable (logged;
 *   its answers simply carry no colour);
 * - stops at once on shutdown (`stop()`), between two covers or while waiting.
 *
 * On a shared database every node runs it at its start; the conditional write
 * makes a cover done twice harmless, and a node that starts after the others
 * finished finds nothing to do.
 */
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import { decodeBudget, MAX_IMAGE_PIXELS, readImageHeader } from '../images/index.js';
import { dominantColor } from '../images/dominantColor.js';
import { openStoredFile } from '../store/index.js';
import type { CoverIndex, CoverRow } from '../store/index.js';

export interface ColorPassDeps {
  covers: Pick<CoverIndex, 'lackingColor' | 'setColor'>;
  coversDir: string;
  logger: Logger;
  /** The one clock (default the system's): the pause between covers. */
  clock?: Clock;
  /** Wait between two covers (default 50 ms): the pass yields to the service's own work. */
  pauseMs?: number;
  /** Largest stored file read (default 20 MB, as `--max-bytes`'s default): a bigger one is skipped. */
  maxFileBytes?: number;
}

/** Rows read at once. */
const PAGE = 100;

export interface ColorPassOutcome {
  /** Covers given a colour. */
  colored: number;
  /** Covers left without one (file missing, too large, undecodable, or replaced meanwhile). */
  skipped: number;
  /** Whether the pass was stopped before it reached the end. */
  stopped: boolean;
}

export class ColorPass {
  private readonly controller = new AbortController();
  private running: Promise<ColorPassOutcome> | undefined;
  private readonly clock: Clock;

  constructor(private readonly deps: ColorPassDeps) {
    this.clock = deps.clock ?? systemClock;
  }

  /** Starts the pass (once; later calls return the same run). Never rejects. */
  start(): Promise<ColorPassOutcome> {
    this.running ??= this.pass().catch((error: unknown) => {
      if (!this.controller.signal.aborted) this.deps.logger.warn('the colour pass for older covers failed; it runs again at the next start', { error: (error as Error).message });
      return { colored: 0, skipped: 0, stopped: true };
    });
    return this.running;
  }

  /** Stops the pass and waits for the cover in hand to finish. */
  async stop(): Promise<void> {
    this.controller.abort(new Error('the service is stopping'));
    await this.running;
  }

  private async pass(): Promise<ColorPassOutcome> {
    const { covers, logger } = this.deps;
    const signal = this.controller.signal;
    const pauseMs = this.deps.pauseMs ?? 50;
    const outcome: ColorPassOutcome = { colored: 0, skipped: 0, stopped: false };
    let after = '';
    for (;;) {
      if (signal.aborted) return { ...outcome, stopped: true };
      const rows = await covers.lackingColor(after, PAGE);
      if (rows.length === 0) break;
      if (after === '') logger.info('giving older covers their colour in the background', { first: rows.length });
      for (const row of rows) {
        if (signal.aborted) return { ...outcome, stopped: true };
        after = row.url;
        const color = await this.colorOf(row, signal);
        if (color !== undefined && (await covers.setColor(row.url, row.path, color))) outcome.colored++;
        else outcome.skipped++;
        if (pauseMs > 0) {
          try {
            await this.clock.sleep(pauseMs, signal);
          } catch {
            return { ...outcome, stopped: true };
          }
        }
      }
      if (rows.length < PAGE) break;
    }
    if (outcome.colored + outcome.skipped > 0) logger.info('older covers given their colour', { colored: outcome.colored, skipped: outcome.skipped });
    return outcome;
  }

  /** The stored file's colour, or undefined (and a log line) when it cannot be had. */
  private async colorOf(row: CoverRow, signal: AbortSignal): Promise<string | undefined> {
    const { coversDir, logger } = this.deps;
    const maxFileBytes = this.deps.maxFileBytes ?? 20 * 1024 * 1024;
    const opened = await openStoredFile(coversDir, row.path);
    if (opened === undefined) {
      logger.warn('colour pass: the cover file is missing or not a plain file inside the covers folder; skipped', { url: row.url, path: row.path });
      return undefined;
    }
    let data: Buffer;
    try {
      if (opened.size > maxFileBytes) {
        logger.warn('colour pass: the cover file is larger than expected; skipped', { url: row.url, path: row.path, bytes: opened.size });
        return undefined;
      }
      data = await opened.handle.readFile({ signal });
    } catch (error) {
      if (!signal.aborted) logger.warn('colour pass: the cover file could not be read; skipped', { url: row.url, path: row.path, error: (error as Error).message });
      return undefined;
    } finally {
      await opened.handle.close();
    }
    const header = readImageHeader(data);
    const pixels = header ? header.width * header.height : row.width * row.height;
    if (!(pixels > 0 && pixels <= MAX_IMAGE_PIXELS)) {
      logger.warn('colour pass: the cover file is not an image of a size it decodes; skipped', { url: row.url, path: row.path });
      return undefined;
    }
    let release: (() => void) | undefined;
    try {
      release = await decodeBudget.acquire(pixels, signal);
      return await dominantColor(data, MAX_IMAGE_PIXELS);
    } catch (error) {
      if (!signal.aborted) logger.warn('colour pass: the cover file is not a decodable image; skipped', { url: row.url, path: row.path, error: (error as Error).message });
      return undefined;
    } finally {
      release?.();
    }
  }
}
