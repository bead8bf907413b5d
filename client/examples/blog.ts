/**
 * A small blog server that renders a page of videos with their covers through
 * coverhelper: plain `node:http`, one `CoverClient` for the whole process, one
 * `check()` per page (the client merges the checks of concurrent pages into one
 * frame and asks each URL once). Each cover is a `<picture>` whose `srcset`s
 * (`coverSrcset`) offer AVIF and WebP sizes, with the original's aspect and
 * dominant colour reserved while it loads.
 *
 *   COVERHELPER_URL=ws://127.0.0.1:8080/ws npm run example      (in client/)
 *
 * Environment:
 *   COVERHELPER_URL     the service's WebSocket (default ws://127.0.0.1:8080/ws)
 *   COVERHELPER_TOKEN   its --client-token, when it has one
 *   PORT, HOST          where the blog listens (default 3000 on 127.0.0.1; PORT=0 picks one)
 *   VIDEOS              a JSON file: [{"title":"…","cover":"https://…"}, …] (default: a few
 *                       YouTube videos; the service must allow their host, i.ytimg.com)
 *
 * In your own code, import from '@coverhelper/client' instead of '../src/index.js'.
 */
/* eslint-disable no-console -- an example says what it does on its console */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CoverClient, CoverClientError, coverSrcset } from '../src/index.js';
import type { CheckResult } from '../src/index.js';

interface Video {
  title: string;
  cover: string;
}

const DEFAULT_VIDEOS: Video[] = [
  { title: 'Big Buck Bunny', cover: 'https://i.ytimg.com/vi/aqz-KE-bpKQ/hqdefault.jpg' },
  { title: 'Sintel', cover: 'https://i.ytimg.com/vi/eRsGyueVLvQ/hqdefault.jpg' },
  { title: 'Tears of Steel', cover: 'https://i.ytimg.com/vi/R6MlUcmOul8/hqdefault.jpg' },
  { title: 'Elephants Dream', cover: 'https://i.ytimg.com/vi/TLkA0RELQ1g/hqdefault.jpg' },
];

function loadVideos(file: string | undefined): Video[] {
  if (!file) return DEFAULT_VIDEOS;
  const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
  const ok = Array.isArray(parsed) && parsed.every((v: unknown) => typeof v === 'object' && v !== null && typeof (v as Video).title === 'string' && typeof (v as Video).cover === 'string');
  if (!ok) throw new Error(`${file}: expected [{"title":"…","cover":"https://…"}, …]`);
  return parsed as Video[];
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** The widths the page offers (the service rounds each up to its own --widths), and how wide a cover is laid out. */
const WIDTHS = [160, 240, 320, 480, 640, 960];
const SIZES = '(max-width: 40rem) 100vw, 320px';

/**
 * One cover: from the service, a `<picture>` of AVIF and WebP sizes with the
 * default variant (`coverUrl`) as the fallback `src`; its `width`/`height`
 * reserve the original's aspect before it loads (no layout shift) and its
 * `color` paints the box meanwhile. Without a cover: the original URL.
 */
function renderCover(video: Video, result: CheckResult | undefined): string {
  const alt = escapeHtml(video.title);
  if (result?.status !== 'ok' || !result.coverUrl) return `<img src="${escapeHtml(video.cover)}" alt="${alt}" width="320" height="200" loading="lazy">`;
  const size = result.width && result.height ? `width="${result.width}" height="${result.height}"` : 'width="320" height="200"';
  const style = result.color ? ` style="background-color:${escapeHtml(result.color)}"` : '';
  const source = (format: 'avif' | 'webp') => `<source type="image/${format}" srcset="${escapeHtml(coverSrcset(result, { widths: WIDTHS, format }))}" sizes="${SIZES}">`;
  return `<picture>${source('avif')}${source('webp')}<img src="${escapeHtml(result.coverUrl)}" srcset="${escapeHtml(coverSrcset(result, { widths: WIDTHS, format: 'jpeg' }))}" sizes="${SIZES}" alt="${alt}" ${size}${style} loading="lazy"></picture>`;
}

/** The page: each video's cover from the service, or the original URL when it has none. */
function renderPage(videos: Video[], results: (CheckResult | undefined)[], note: string): string {
  const items = videos.map((video, i) => {
    const result = results[i];
    const status = result ? (result.status === 'error' ? `error: ${result.error?.code ?? '?'}` : result.status) : 'not checked';
    return `    <li>${renderCover(video, result)}
      <span class="title">${escapeHtml(video.title)}</span> <small data-status="${escapeHtml(result?.status ?? 'none')}">${escapeHtml(status)}</small></li>`;
  });
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Videos</title>
<style>body{font-family:sans-serif;max-width:60rem;margin:auto} ul{list-style:none;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:1rem} img{display:block;width:100%;height:auto;object-fit:cover;background:#ddd}</style>
</head>
<body>
  <h1>Videos</h1>
  <p>${escapeHtml(note)}</p>
  <ul>
${items.join('\n')}
  </ul>
</body>
</html>
`;
}

const serviceUrl = process.env.COVERHELPER_URL ?? 'ws://127.0.0.1:8080/ws';
const token = process.env.COVERHELPER_TOKEN;
const videos = loadVideos(process.env.VIDEOS);
const covers = new CoverClient(serviceUrl, { ...(token ? { token } : {}), timeoutMs: 5000 });
covers.on('connect', (e) => console.log(`coverhelper ${e.version} connected (${serviceUrl})`));
covers.on('disconnect', (e) => console.log(`coverhelper disconnected (${e.error?.message ?? e.code})${e.willReconnect ? ', reconnecting' : ''}`));

const server = http.createServer((req, res) => {
  if (req.method !== 'GET' || (req.url !== '/' && req.url !== '/index.html')) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    return;
  }
  // The page is not held up by a slow download: a reader who leaves aborts the check too.
  const controller = new AbortController();
  res.once('close', () => controller.abort());
  covers
    .check(videos.map((v) => v.cover), { signal: controller.signal })
    .then(
      (results) => ({ results, note: `Covers from coverhelper: ${results.filter((r) => r.status === 'ok').length} of ${results.length}.` }),
      (error: unknown) => ({
        results: [],
        note: `coverhelper did not answer (${error instanceof CoverClientError ? error.code : String(error)}): original covers.`,
      }),
    )
    .then(({ results, note }) => {
      if (res.destroyed) return;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(renderPage(videos, results, note));
    })
    .catch((error: unknown) => res.destroy(error as Error));
});

server.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '127.0.0.1', () => {
  const { address, port } = server.address() as AddressInfo;
  console.log(`blog on http://${address}:${port}/`);
});

const stop = () => {
  server.close();
  server.closeAllConnections();
  void covers.close();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
