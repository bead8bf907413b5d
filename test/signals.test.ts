/**
 * What a real process does with what an operator's machine sends it besides
 * SIGTERM: SIGHUP (a closed terminal, logrotate's habit) and a misspelt
 * `COVERHELPER_…` variable. Neither passes silently, and neither ends the process.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { waitUntil } from './helpers/db.js';
import { startService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';

describe('signals and the environment at a real start', () => {
  it('warns once about a misspelt COVERHELPER_ variable, ignores SIGHUP with a log line, and still stops on SIGTERM', async (t) => {
    const dir = await tempDir(t);
    const service = await startService(['--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers')], {
      COVERHELPER_WORKRES: '3',
      COVERHELPER_TEST_NOT_AN_OPTION: '1',
    });
    t.after(() => service.kill());
    const warned = service.logs.filter((line) => line.level === 'warn' && /COVERHELPER_WORKRES/.test(line.message));
    assert.equal(warned.length, 1, 'one warn line');
    assert.match(warned[0]!.message, /COVERHELPER_WORKRES is set but is not an option: ignored; did you mean COVERHELPER_WORKERS\?/);
    assert.ok(!service.logs.some((line) => /COVERHELPER_TEST_NOT_AN_OPTION/.test(line.message)), "the suite's own knobs are not options to warn about");

    service.child.kill('SIGHUP');
    await service.waitForLog((line) => /SIGHUP received: ignored/.test(line.message), 5000);
    assert.equal((await fetch(`${service.url}/healthz`)).status, 200, 'still serving after SIGHUP');
    service.child.kill('SIGHUP');
    await waitUntil(() => service.logs.filter((line) => /SIGHUP received/.test(line.message)).length === 2, 'the second SIGHUP said too', 5000);
    assert.equal(service.child.exitCode, null, 'alive');

    assert.equal(await service.stop(), 0, 'SIGTERM still stops it gracefully');
  });
});
