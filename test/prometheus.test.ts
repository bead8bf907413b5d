/**
 * What the operator's Prometheus and Grafana get from the service: `/metrics`
 * passes `promtool check metrics`, the alert rules in deploy/prometheus pass
 * `promtool check rules`, and every metric the rules and the Grafana dashboard
 * name is one the real service exports. promtool is Debian's `prometheus`
 * package (`.ci/run` installs it); without it the promtool checks skip, saying
 * so, and the metric names are still checked.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startOrigin } from './helpers/origin.js';
import type { Origin } from './helpers/origin.js';
import { root, startService } from './helpers/service.js';
import type { Service } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';
import { connect } from './helpers/wsClient.js';

const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((file) => existsSync(file));
const noPromtool = promtool === undefined ? "promtool is not installed (Debian's prometheus package; .ci/run installs it)" : false;
const alerts = path.join(root, 'deploy/prometheus/alerts.yml');
const dashboard = JSON.parse(readFileSync(path.join(root, 'deploy/grafana/coverhelper.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };

/** Metric names in a PromQL expression (the service's and prom-client's families; `up` is Prometheus' own). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b((?:coverhelper|process|nodejs)_[a-z0-9_]+)\b/g)].map((m) => m[1]!);
}

describe('Prometheus and Grafana', () => {
  let origin: Origin;
  let service: Service;
  let text: string;
  const cleanups: (() => Promise<void>)[] = [];
  before(async () => {
    origin = await startOrigin();
    const dir = await tempDir({ after: (fn) => cleanups.push(fn) });
    service = await startService(['--data-dir', `${dir}/data`, '--covers-dir', `${dir}/covers`, '--allow-hosts', '127.0.0.1', '--allow-private-network', '--retries', '0']);
    // Some of everything: a download, a failure, a cover served, a proxy answer, a 404.
    const ws = await connect(service.wsUrl);
    const { done } = await ws.check('p', [`${origin.url}/img/prom.jpg`, `${origin.url}/status/500`]);
    await ws.close();
    const stored = (done.results as { path?: string }[]).find((r) => r.path !== undefined)!;
    assert.equal((await fetch(`${service.url}/covers/${stored.path}`)).status, 200);
    assert.equal((await fetch(`${service.url}/?url=${encodeURIComponent(`${origin.url}/img/prom.jpg`)}`)).status, 200);
    assert.equal((await fetch(`${service.url}/nothing-here`)).status, 404);
    text = await (await fetch(`${service.url}/metrics`)).text();
  });
  after(async () => {
    await service?.stop();
    await origin?.close();
    for (const cleanup of cleanups) await cleanup();
  });

  it('/metrics passes promtool check metrics', { skip: noPromtool }, () => {
    const checked = spawnSync(promtool!, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(checked.status, 0, `promtool check metrics:\n${checked.stdout}${checked.stderr}`);
  });

  it('the alert rules pass promtool check rules', { skip: noPromtool }, () => {
    const checked = spawnSync(promtool!, ['check', 'rules', alerts], { encoding: 'utf8' });
    assert.equal(checked.status, 0, `promtool check rules:\n${checked.stdout}${checked.stderr}`);
    assert.match(checked.stdout, /SUCCESS: 6 rules found/);
  });

  it('every metric the alert rules and the Grafana dashboard name is exported', () => {
    const families = new Set([...text.matchAll(/^# TYPE (\S+) (\w+)$/gm)].map((m) => m[1]!));
    const histograms = new Set([...text.matchAll(/^# TYPE (\S+) histogram$/gm)].map((m) => m[1]!));
    const exported = (name: string) => families.has(name) || [...histograms].some((h) => [`${h}_bucket`, `${h}_sum`, `${h}_count`].includes(name));
    const rules = readFileSync(alerts, 'utf8');
    const ruleExprs = [...rules.matchAll(/expr: (\|\n(?:\s{10}.*\n)+|.*)/g)].map((m) => m[1]!);
    assert.equal(ruleExprs.length, 6, 'six rules, each with an expression');
    for (const [where, exprs] of [['alerts.yml', ruleExprs], ...dashboard.panels.map((p) => [`panel "${p.title}"`, p.targets.map((t) => t.expr)] as const)] as const) {
      for (const expr of exprs) {
        const names = metricNames(expr);
        if (!/\bup\{/.test(expr)) assert.ok(names.length > 0, `${where}: ${expr} names a metric`);
        for (const name of names) assert.ok(exported(name), `${where} names ${name}, which /metrics does not export`);
      }
    }
    for (const needed of ['coverhelper_status', 'coverhelper_upstream_cooling', 'coverhelper_downloads_total', 'coverhelper_disk_used_ratio']) {
      assert.ok(rules.includes(needed), `an alert on ${needed}`);
    }
    assert.match(rules, /up\{job="coverhelper"\} == 0/, 'an alert when the service is down');
  });
});
