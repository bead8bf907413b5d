/**
 * Archive jobs.
 *
 *   npm run bench:jobs      (node --import tsx bench/jobs.ts)
 *
 * 2,000 covers (about 50 KB JPEGs from a loopback origin, stored as downloaded:
 * `--resize off`) are first cached by `/ws` checks. Then, in alternating rounds:
 *
 *   job     POST /api/jobs with the 2,000 URLs, polled (GET every 20 ms) until
 *           `ready`: the time to ready (every URL answered from the index,
 *           the tar streamed to a temp file and renamed), and the archive's
 *           size over that time;
 *   tar     `tar -cf` of the same 2,000 files (the list the job's README
 *           gives), run by the same machine in the same round;
 *
 * and the job's archive downloaded once (GET …/archive) for its throughput.
 * The ratio is job time over `tar -cf` time (1× = as fast as tar). Medians of
 * the rounds.
 */
import { spawnSync } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { connect } from '../test/helpers/wsClient.js';
import { startBulkOrigin } from './lib/bulkOrigin.js';
import { mb, ms, num, ratio, Report, step } from './lib/report.js';
import { envNumber, scaled } from './lib/scale.js';
import { runScenario, sleep, startBenchService, stopService, tempDir } from './lib/service.js';
import { median } from './lib/stats.js';

interface Job {
  id: string;
  status: string;
  ok: number;
  failed: number;
  archiveUrl?: string;
}

runScenario('jobs', 15 * 60_000, async () => {
  const count = scaled(2000, 100);
  const rounds = envNumber('BENCH_JOBS_ROUNDS', 5);
  const report = new Report('jobs', 'Archive jobs', 'npm run bench:jobs');
  const dir = await tempDir('jobs');
  const origin = await startBulkOrigin('large');
  const coversDir = path.join(dir, 'covers');
  const service = await startBenchService({ dataDir: path.join(dir, 'data'), coversDir, profileName: 'jobs' });
  try {
    const urls = Array.from({ length: count }, (_, i) => origin.imageUrl('job', i));
    step(`caching ${num(count)} covers through /ws`);
    const client = await connect(service.wsUrl);
    for (let i = 0; i < urls.length; i += 1000) {
      const { done } = await client.check(`warm${i}`, urls.slice(i, i + 1000), 300_000);
      if (done.ok !== Math.min(1000, urls.length - i)) throw new Error(`warm-up check: ${JSON.stringify(done).slice(0, 200)}`);
    }
    await client.close();

    const jobTimes: number[] = [];
    const tarTimes: number[] = [];
    let archiveBytes = 0;
    let tarBytes = 0;
    let lastJob: Job | undefined;
    const fileList = path.join(dir, 'files.txt');
    for (let round = 0; round < rounds; round++) {
      const started = performance.now();
      const created = await fetch(`${service.url}/api/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ urls, name: `bench ${round}` }) });
      if (created.status !== 201) throw new Error(`POST /api/jobs: ${created.status} ${await created.text()}`);
      const { id } = (await created.json()) as Job;
      let job: Job;
      for (;;) {
        job = (await (await fetch(`${service.url}/api/jobs/${id}`)).json()) as Job;
        if (job.status === 'ready' || job.status === 'failed') break;
        await sleep(20);
      }
      const took = performance.now() - started;
      if (job.status !== 'ready' || job.ok !== count) throw new Error(`job ended ${JSON.stringify(job)}`);
      jobTimes.push(took);
      lastJob = job;
      archiveBytes = statSync(path.join(coversDir, '.jobs', `${id}.tar`)).size;

      if (round === 0) {
        // The same files: the paths the README lists.
        const archive = Buffer.from(await (await fetch(job.archiveUrl!)).arrayBuffer());
        const readme = archive.toString('latin1');
        const paths = [...new Set([...readme.matchAll(/\tcovers\/(\S+)/g)].map((match) => match[1]!))];
        if (paths.length !== count) throw new Error(`README lists ${paths.length} files`);
        writeFileSync(fileList, `${paths.join('\n')}\n`);
      }
      const tarFile = path.join(dir, `tar-${round}.tar`);
      const tarStarted = performance.now();
      const tar = spawnSync('tar', ['-cf', tarFile, '-C', coversDir, '-T', fileList], { stdio: 'ignore' });
      const tarTook = performance.now() - tarStarted;
      if (tar.status !== 0) throw new Error(`tar -cf exited ${tar.status}`);
      tarTimes.push(tarTook);
      tarBytes = statSync(tarFile).size;
      step(`round ${round + 1}/${rounds}: job ready in ${ms(took, 0)} (${mb(archiveBytes)}), tar -cf in ${ms(tarTook, 0)} (${mb(tarBytes)})`);
    }

    const download = performance.now();
    const response = await fetch(lastJob!.archiveUrl!);
    let downloaded = 0;
    for await (const chunk of response.body!) downloaded += (chunk as Uint8Array).length;
    const downloadMs = performance.now() - download;
    if (downloaded !== Number(response.headers.get('content-length'))) throw new Error('the download is not the announced length');

    const jobMs = median(jobTimes);
    const tarMs = median(tarTimes);
    const perSecond = (bytes: number, msecs: number) => `${num(bytes / 2 ** 20 / (msecs / 1000), 1)} MB/s`;
    report.figure(`job of ${num(count)} cached covers: POST to ready`, ms(jobMs, 0), `median of ${rounds}; archive ${mb(archiveBytes)}`);
    report.figure('job archive throughput (archive bytes / time to ready)', perSecond(archiveBytes, jobMs));
    report.figure(`tar -cf of the same ${num(count)} files`, ms(tarMs, 0), `median of ${rounds}; ${perSecond(tarBytes, tarMs)}, ${mb(tarBytes)}`);
    report.figure('job time / tar -cf time', ratio(jobMs / tarMs), `includes answering ${num(count)} URLs from the index, the rows written and the rename`);
    report.figure('archive download (GET …/archive)', perSecond(downloaded, downloadMs), `${mb(downloaded)} in ${ms(downloadMs, 0)}`);
    report.note('2 cores shared with other work: a noisy machine; compare the ratio, not the absolute times');
    report.finish();
  } finally {
    await stopService(service);
    await origin.close();
  }
});
