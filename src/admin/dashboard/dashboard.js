// @ts-check
/**
 * The admin dashboard (served at /admin/ with a CSP that allows no inline script).
 *
 * One live stream (/admin/ws: a snapshot, task frames, stats frames every second,
 * job frames) keeps the lists; the HTTP API (/admin/api/…) gives the history, the
 * stored totals, the nodes, the task search and the detail view. Nothing shown is
 * left to look current when it is not: when the stream drops (or stays silent
 * longer than STALE_MS), the badge says "disconnected", every live panel is marked
 * so, and no speed, stall hint or button pretends otherwise.
 *
 * Everything that comes from the server is checked before use; text is only ever
 * set as text (never HTML), and links are only http(s).
 *
 * Checked by `tsc -p tsconfig.dashboard.json` (strict, lib DOM) and by eslint.
 */

// The service's frames and answers are declared once, by the wire contracts
// (src/wire/adminStream.ts, src/wire/jobs.ts): the page names their types (type
// only, nothing is imported at run time) and keeps its own copies only where it
// holds less or more than the wire says.
/** @typedef {import('../../wire/adminStream.js').TaskStatus} TaskStatus */
/** @typedef {import('../../wire/adminStream.js').TaskError} TaskError */
/** @typedef {import('../../wire/adminStream.js').TaskJson} TaskJson */
/** @typedef {import('../../wire/adminStream.js').TaskEvent} TaskEvent */
/** @typedef {import('../../wire/adminStream.js').TimelineEvent} TimelineEvent */
/** @typedef {import('../../wire/adminStream.js').SnapshotFrame} SnapshotFrame */
/** @typedef {import('../../wire/adminStream.js').StatsFrame} StatsFrame */
/** @typedef {import('../../wire/adminStream.js').JobFrame} JobFrame */
/** @typedef {import('../../wire/adminStream.js').TasksPage} TasksPage */
/** @typedef {import('../../wire/adminStream.js').TaskDetail} TaskDetail */
/** @typedef {import('../../wire/adminStream.js').Summary} Summary */
/** @typedef {import('../../wire/adminStream.js').NodesAnswer} NodesAnswer */
/** @typedef {import('../../wire/jobs.js').JobJson} JobJson */
/**
 * What came from the server, before it is checked: the wire type's fields, each maybe missing or of any type.
 * @template T
 * @typedef {import('../../wire/adminStream.js').Unchecked<T>} Unchecked
 */
/**
 * A task as the page keeps it, from a task frame, a snapshot's task, an API row
 * or a timeline entry: `at` is the time of the change (ISO); `node` the node
 * that made the change, or holds the task; `attempts` and `startedAt` are null
 * when the frame did not say.
 * @typedef {Pick<TaskJson, 'url'|'status'|'bytes'|'total'|'error'|'node'|'startedAt'> & {at: string, attempts: TaskJson['attempts']|null}} Task
 */
/**
 * What the page measured of one running download.
 * @typedef {object} Progress
 * @property {number} startedAt   ms (the server's start time when known, else when first seen)
 * @property {number} lastBytes
 * @property {number} lastChange  ms (local) when the byte count last moved
 * @property {Array<[number, number]>} samples  [local ms, bytes], the last SPEED_WINDOW_MS and one before
 */
/**
 * A job as the page keeps it: the wire's, with any status shown as it comes and null where a field is missing.
 * @typedef {Pick<JobJson, 'id'|'name'|'total'|'ok'|'failed'|'waiting'> & {status: JobJson['status']|string, created: JobJson['created']|null, expires: JobJson['expires']|null, archiveUrl: NonNullable<JobJson['archiveUrl']>|null, node: NonNullable<JobJson['node']>|null}} Job
 */
/**
 * An upstream host that cooled within the hour, from the stats frame's `upstream`,
 * with its times in ms (0 when not said) and null for no `reason`.
 * @typedef {Pick<import('../../wire/adminStream.js').UpstreamHost, 'state'> & {host: string, retryAt: number, reason: string|null, cooledAt: number}} UpstreamHost
 */
/** @typedef {import('../../wire/adminStream.js').NodeJson} NodeInfo */

const TOKEN_KEY = 'coverhelper.adminToken';
const MAX_FAILURES = 50;
const MAX_FINISHED = 50;
const MAX_QUEUE_ROWS = 100;
/** No frame for this long (stats come every second): the stream is taken as dead. */
const STALE_MS = 5000;
/** No new bytes for this long: the download is shown as stalled. */
const STALL_MS = 5000;
const SPEED_WINDOW_MS = 5000;
/** The least time between two fetches of the totals or of the task page that task changes set off. */
const REFRESH_MS = 1500;
const NODES_EVERY_MS = 5000;
/** Most upstream hosts kept from a frame (the service sends at most 200). */
const MAX_UPSTREAM_HOSTS = 200;
/** @type {readonly TaskStatus[]} */
const STATUSES = ['waiting', 'queued', 'downloading', 'ok', 'error', 'tle'];
/** @type {ReadonlySet<string>} */
const ACTIVE = new Set(['waiting', 'queued', 'downloading']);
/** @type {ReadonlySet<string>} */
const FAILED = new Set(['error', 'tle']);

// The API lives next to this page: /admin/ → /admin/api/…, /admin/ws (also behind a path prefix).
const base = new URL(location.pathname.replace(/\/+$/, '') + '/', location.origin);
/** @param {string} path */
const apiUrl = (path) => new URL(path, base).href;

// ---- the page's elements -------------------------------------------------

/**
 * An element by id, of the expected kind; a page that lacks it is broken, and says so at once.
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} kind
 * @returns {T}
 */
function byId(id, kind) {
  const node = document.getElementById(id);
  if (!(node instanceof kind)) throw new Error(`the page has no ${kind.name} #${id}`);
  return node;
}
/** @param {string} id */
const elem = (id) => byId(id, HTMLElement);
/** @param {string} id */
const button = (id) => byId(id, HTMLButtonElement);
/** @param {string} id */
const input = (id) => byId(id, HTMLInputElement);
/** @param {string} id */
const select = (id) => byId(id, HTMLSelectElement);

const ui = {
  status: elem('status'), reasons: elem('reasons'), link: elem('link'), actions: elem('actions'), notice: elem('notice'), upstream: elem('upstream'),
  gateBanner: elem('gate-banner'), heldLabel: elem('held-label'),
  login: elem('login'), loginForm: byId('login-form', HTMLFormElement), token: input('token'), connect: button('connect'), loginError: elem('login-error'),
  dashboard: elem('dashboard'), pause: button('pause'), resume: button('resume'), logout: button('logout'),
  since: elem('since'),
  running: elem('running'), runningCount: elem('running-count'), runningEmpty: elem('running-empty'),
  queue: elem('queue'), queueCount: elem('queue-count'), queueEmpty: elem('queue-empty'), queueMore: elem('queue-more'),
  queuedCount: elem('queued-count'), waitingCount: elem('waiting-count'),
  finished: elem('finished'), finishedEmpty: elem('finished-empty'),
  failures: elem('failures'), failuresCount: elem('failures-count'), failuresEmpty: elem('failures-empty'),
  retryAll: button('retry-all'), retryAllResult: elem('retry-all-result'),
  nodes: elem('nodes'), nodesCount: elem('nodes-count'), nodesHint: elem('nodes-hint'),
  jobs: elem('jobs'), jobsCount: elem('jobs-count'), jobsEmpty: elem('jobs-empty'),
  uploadForm: byId('upload-form', HTMLFormElement), uploadUrl: input('upload-url'), uploadFile: input('upload-file'), upload: button('upload'),
  deleteCover: button('delete-cover'), uploadResult: elem('upload-result'),
  taskSearch: byId('task-search', HTMLFormElement), taskQ: input('task-q'), taskStatus: select('task-status'), taskLimit: select('task-limit'),
  tasks: elem('tasks'), tasksTotal: elem('tasks-total'), tasksEmpty: elem('tasks-empty'), tasksPrev: button('tasks-prev'), tasksNext: button('tasks-next'), tasksPage: elem('tasks-page'),
  detail: byId('detail', HTMLDialogElement), detailClose: button('detail-close'), detailUrl: elem('detail-url'), detailLoading: elem('detail-loading'),
  detailFacts: elem('detail-facts'), detailStatus: elem('detail-status'), detailAttempts: elem('detail-attempts'), detailError: elem('detail-error'),
  detailNode: elem('detail-node'), detailCreated: elem('detail-created'), detailStarted: elem('detail-started'), detailFinished: elem('detail-finished'),
  detailBytes: elem('detail-bytes'), detailCover: elem('detail-cover'), detailVariants: elem('detail-variants'), detailAnswer: elem('detail-answer'), detailTimeline: elem('detail-timeline'), detailTimelineEmpty: elem('detail-timeline-empty'),
  detailRetry: button('detail-retry'), detailCancel: button('detail-cancel'), detailRemove: button('detail-remove'), detailResult: elem('detail-result'),
};

/** @type {Map<string, HTMLElement>} */
const statCells = new Map();
for (const cell of document.querySelectorAll('[data-stat]')) if (cell instanceof HTMLElement && cell.dataset.stat) statCells.set(cell.dataset.stat, cell);
/** @type {Map<string, HTMLElement>} */
const nowCells = new Map();
for (const cell of document.querySelectorAll('[data-now]')) if (cell instanceof HTMLElement && cell.dataset.now) nowCells.set(cell.dataset.now, cell);
/** @type {Map<string, HTMLElement>} */
const totalCells = new Map();
for (const cell of document.querySelectorAll('[data-total]')) if (cell instanceof HTMLElement && cell.dataset.total) totalCells.set(cell.dataset.total, cell);

// ---- state ---------------------------------------------------------------

const state = {
  /** @type {string|null} the service status the stream last said (ready, tardy, paused) */
  status: null,
  /** @type {string[]} */
  reasons: [],
  /** @type {number} ms, since when the service shows its status (0: not said) */
  since: 0,
  /** @type {string|null} why it is tardy (the limits passed) or paused (who paused) */
  why: null,
  /** @type {Record<string, number>} counters of the latest stats frame */
  stats: {},
  /** @type {Record<string, number>|null} GET /admin/api/summary */
  totals: null,
  /** @type {Map<string, Task>} url → latest change of an unfinished task */
  tasks: new Map(),
  /** @type {Map<string, Progress>} url → what the page measured of its download */
  progress: new Map(),
  /** @type {Task[]} newest first */
  finished: [],
  /** @type {Map<string, Task>} */
  failures: new Map(),
  /** @type {Map<string, number>} url → time of the latest live change, so an older fetched row never overrides it */
  lastEvent: new Map(),
  /** @type {Map<string, string>} url → 'pending' or the error of the last try, for row buttons */
  busy: new Map(),
  /** @type {NodeInfo[]} */
  nodes: [],
  /** @type {string|null} */
  self: null,
  /** @type {Job[]|null} null: the service sends no jobs */
  jobs: null,
  /** @type {Map<string, UpstreamHost>} host → its state, from the latest stats (absent: no host cooled within the hour) */
  upstream: new Map(),
};

const conn = {
  /** @type {string|null} */
  token: null,
  /** @type {WebSocket|null} */
  ws: null,
  generation: 0,
  gotFrame: false,
  everLive: false,
  /** the stream is open and frames come */
  live: false,
  attempt: 0,
  lastFrameAt: 0,
  /** @type {number|undefined} */
  timer: undefined,
};

// ---- small helpers -------------------------------------------------------

/**
 * @param {Node} node
 * @param {unknown} text
 */
function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

/**
 * A new element with a class and text.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * The first element under `root` matching `selector`, of the expected kind.
 * @template {Element} T
 * @param {ParentNode} root
 * @param {string} selector
 * @param {new () => T} kind
 * @returns {T}
 */
function part(root, selector, kind) {
  const node = root.querySelector(selector);
  if (!(node instanceof kind)) throw new Error(`no ${selector} in a row`);
  return node;
}

/** @param {unknown} n */
function formatBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  if (n < 1024) return `${Math.round(n)} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i] ?? 'TB'}`;
}

/** @param {number} ms */
function formatDuration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** @param {unknown} iso */
function timeOf(iso) {
  const t = typeof iso === 'string' ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? t : 0;
}

/** @param {unknown} iso */
function formatTime(iso) {
  const t = timeOf(iso);
  if (!t) return '—';
  const d = new Date(t);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

/** @param {unknown} iso */
function ago(iso) {
  const t = timeOf(iso);
  return t ? `${formatDuration(Date.now() - t)} ago` : '—';
}

/**
 * An http(s) link, or null: nothing else from the server becomes an href or a src.
 * @param {unknown} value
 */
function safeHref(value) {
  if (typeof value !== 'string') return null;
  try {
    const u = new URL(value, location.href);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

/**
 * @param {unknown} value
 * @returns {Record<string, unknown>|null}
 */
function record(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? /** @type {Record<string, unknown>} */ (value) : null;
}
/** @param {unknown} value */
const str = (value) => (typeof value === 'string' ? value : null);
/** @param {unknown} value */
const num = (value) => (typeof value === 'number' && Number.isFinite(value) ? value : null);

/**
 * @param {unknown} error
 * @param {string} status
 * @returns {TaskError|null}
 */
function normError(error, status) {
  const e = /** @type {Unchecked<TaskError>|null} */ (record(error));
  if (e) return { code: str(e.code) ?? status, message: str(e.message) ?? '' };
  return status === 'tle' ? { code: 'tle', message: 'time limit exceeded' } : null;
}

/**
 * A task from a frame or an API row, or null when it is not one.
 * @param {unknown} value
 * @returns {Task|null}
 */
function normTask(value) {
  const t = /** @type {Unchecked<TaskJson & TaskEvent>|null} */ (record(value));
  if (!t || typeof t.url !== 'string' || !STATUSES.includes(/** @type {TaskStatus} */ (t.status))) return null;
  const status = /** @type {TaskStatus} */ (t.status);
  return {
    url: t.url,
    status,
    bytes: num(t.bytes) ?? 0,
    total: num(t.total),
    error: normError(t.error, status),
    at: str(t.at) ?? str(t.updatedAt) ?? str(t.finishedAt) ?? new Date().toISOString(),
    node: str(t.node),
    attempts: num(t.attempts),
    startedAt: str(t.startedAt),
  };
}

/** @param {string} text @param {'info'|'bad'} [kind] */
function notice(text, kind) {
  ui.notice.hidden = !text;
  setText(ui.notice, text);
  ui.notice.className = kind === 'info' ? 'notice info' : 'notice';
}

/** @param {unknown} error */
const messageOf = (error) => (error instanceof Error ? error.message : String(error));

class AuthError extends Error {}
class ApiError extends Error {
  /** @param {string} message @param {number} status @param {string|null} code */
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * An admin API call with the token; a 401 sends the user back to the token form.
 * @param {string} method
 * @param {string} path  relative to /admin/
 * @param {{body?: BodyInit, headers?: Record<string, string>}} [options]
 * @returns {Promise<unknown>}
 */
async function api(method, path, options = {}) {
  const token = conn.token;
  /** @type {Response} */
  let res;
  try {
    res = await fetch(apiUrl(path), {
      method,
      body: options.body,
      cache: 'no-store',
      headers: { Authorization: `Bearer ${token ?? ''}`, ...options.headers },
    });
  } catch {
    throw new Error('the server cannot be reached');
  }
  if (res.status === 401) {
    if (token === conn.token) wrongToken();
    throw new AuthError('wrong token');
  }
  const text = await res.text();
  /** @type {unknown} */
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const body = record(data);
    const message = body && typeof body.message === 'string' ? body.message : `HTTP ${res.status}`;
    throw new ApiError(message, res.status, body && typeof body.code === 'string' ? body.code : null);
  }
  return data;
}

/** @param {string} url */
const q = (url) => encodeURIComponent(url);

// ---- the connection ------------------------------------------------------

/** @param {'off'|'connecting'|'live'|'down'} name @param {string} text */
function setLink(name, text) {
  conn.live = name === 'live';
  document.body.dataset.link = name;
  ui.link.dataset.state = name;
  setText(ui.link, text);
  invalidate();
}

/** @param {string} message */
function showLogin(message) {
  ui.dashboard.hidden = true;
  ui.actions.hidden = true;
  ui.login.hidden = false;
  setText(ui.loginError, message);
  ui.loginError.className = message ? 'empty bad' : 'empty';
  state.status = null;
  // Nothing of the service is shown without its token.
  state.upstream.clear();
  setLink('off', 'offline');
  ui.connect.disabled = false;
  ui.token.focus();
  ui.token.select();
}

function stopSocket() {
  conn.generation++;
  window.clearTimeout(conn.timer);
  conn.timer = undefined;
  const ws = conn.ws;
  conn.ws = null;
  if (ws) {
    try {
      ws.close(1000, 'bye');
    } catch {
      // already closed
    }
  }
}

function wrongToken() {
  stopSocket();
  conn.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  notice('');
  showLogin('wrong token');
}

/** @param {string} token */
function start(token) {
  stopSocket();
  conn.token = token;
  conn.everLive = false;
  conn.attempt = 0;
  sessionStorage.setItem(TOKEN_KEY, token);
  ui.connect.disabled = true;
  setText(ui.loginError, 'connecting…');
  ui.loginError.className = 'empty';
  openSocket();
}

function openSocket() {
  window.clearTimeout(conn.timer);
  conn.timer = undefined;
  const generation = ++conn.generation;
  const wsUrl = new URL('ws', base);
  wsUrl.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  wsUrl.search = `?token=${q(conn.token ?? '')}`;
  conn.gotFrame = false;
  setLink(conn.everLive ? 'down' : 'connecting', 'connecting…');
  /** @type {WebSocket} */
  let ws;
  try {
    ws = new WebSocket(wsUrl.href);
  } catch (error) {
    notice(`cannot open the live stream: ${messageOf(error)}`);
    scheduleReconnect();
    return;
  }
  conn.ws = ws;
  ws.addEventListener('message', (event) => {
    if (generation !== conn.generation) return;
    /** @type {unknown} */
    let frame;
    try {
      frame = JSON.parse(String(event.data));
    } catch {
      return;
    }
    const f = record(frame);
    if (!f) return;
    conn.lastFrameAt = Date.now();
    if (!conn.gotFrame) {
      conn.gotFrame = true;
      conn.everLive = true;
      conn.attempt = 0;
      becameLive();
    }
    handleFrame(f);
  });
  ws.addEventListener('close', () => {
    if (generation !== conn.generation) return;
    conn.ws = null;
    if (conn.gotFrame) {
      lostStream('the live stream closed');
    } else {
      void closedEarly(generation);
    }
  });
}

/**
 * The stream is gone (closed, or silent): say so everywhere, then try again.
 * @param {string} why
 */
function lostStream(why) {
  notice(`Disconnected: ${why}. What is shown is the last known state; reconnecting.`, 'info');
  setLink('down', 'disconnected');
  scheduleReconnect();
}

/**
 * The socket closed before its first frame: a wrong token (401 at the upgrade), or the server is away.
 * @param {number} generation
 */
async function closedEarly(generation) {
  /** @type {string} */
  let outcome;
  try {
    const res = await fetch(apiUrl('api/summary'), { cache: 'no-store', headers: { Authorization: `Bearer ${conn.token ?? ''}` } });
    outcome = res.status === 401 ? 'unauthorized' : res.ok ? 'ok' : `HTTP ${res.status}`;
  } catch {
    outcome = 'unreachable';
  }
  if (generation !== conn.generation) return;
  if (outcome === 'unauthorized') return wrongToken();
  if (!conn.everLive && outcome !== 'unreachable' && outcome !== 'ok') return wrongToken();
  lostStream(outcome === 'unreachable' ? 'the server cannot be reached' : 'the live stream closed at once');
}

function scheduleReconnect() {
  window.clearTimeout(conn.timer);
  const delay = Math.min(30_000, 1000 * 2 ** Math.min(conn.attempt, 5)) * (0.75 + Math.random() * 0.5);
  conn.attempt++;
  const until = Date.now() + delay;
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) {
      openSocket();
      return;
    }
    setText(ui.link, `disconnected · retrying in ${left} s`);
    conn.timer = window.setTimeout(tick, Math.min(1000, until - Date.now()));
  };
  tick();
}

function becameLive() {
  notice('');
  ui.login.hidden = true;
  ui.dashboard.hidden = false;
  ui.actions.hidden = false;
  ui.connect.disabled = false;
  setText(ui.loginError, '');
  setLink('live', 'live');
  void loadHistory();
  void loadTotals();
  void loadNodes();
  void loadTaskPage();
  openFromHash();
}

// Back online, or the tab shown again while waiting to reconnect: try now.
function reconnectSoon() {
  if (conn.token && !conn.ws && conn.timer !== undefined) {
    conn.attempt = 0;
    openSocket();
  }
}
window.addEventListener('online', reconnectSoon);
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) reconnectSoon();
});

// Every second: a stream silent past STALE_MS is dead (a half-open connection
// sends nothing and never closes); elapsed times, speeds and stall hints move on.
window.setInterval(() => {
  if (conn.live && Date.now() - conn.lastFrameAt > STALE_MS && conn.ws) {
    const ws = conn.ws;
    conn.ws = null;
    conn.generation++;
    try {
      ws.close(4000, 'silent');
    } catch {
      // already closed
    }
    lostStream(`no frame for ${Math.round(STALE_MS / 1000)} s`);
  }
  if (conn.live && Date.now() - nodesLoadedAt >= NODES_EVERY_MS) void loadNodes();
  renderRunning();
  renderNodes();
  renderGate();
  renderUpstream();
}, 1000);

// ---- frames --------------------------------------------------------------

/** @param {Record<string, unknown>} frame */
function handleFrame(frame) {
  switch (frame.type) {
    case 'snapshot':
      return applySnapshot(frame);
    case 'task':
      return applyTask(frame);
    case 'stats':
      return applyStats(frame);
    case 'job':
      return applyJob(frame);
    default:
      return undefined;
  }
}

/**
 * The service's status, with since when and why (frames from older services say neither).
 * @param {unknown} status @param {unknown} reasons @param {unknown} [since] @param {unknown} [why]
 */
function applyStatus(status, reasons, since, why) {
  if (typeof status === 'string' && status) {
    if (status !== state.status) {
      state.reasons = [];
      state.since = 0;
      state.why = null;
    }
    state.status = status;
  }
  if (Array.isArray(reasons)) state.reasons = reasons.map(String);
  const at = timeOf(since);
  if (at) state.since = at;
  if (typeof why === 'string') state.why = why.slice(0, 2000);
  invalidate();
}

/** @param {Unchecked<SnapshotFrame>} frame */
function applySnapshot(frame) {
  state.tasks.clear();
  state.lastEvent.clear();
  const known = new Set();
  for (const value of Array.isArray(frame.tasks) ? frame.tasks : []) {
    const task = normTask(value);
    if (!task || !ACTIVE.has(task.status)) continue;
    state.tasks.set(task.url, task);
    known.add(task.url);
    track(task);
  }
  for (const url of state.progress.keys()) if (!known.has(url)) state.progress.delete(url);
  state.stats = {};
  const stats = record(frame.stats);
  if (stats) applyStats(stats);
  applyStatus(frame.status, frame.reasons, frame.since, frame.why);
  // A service without archive jobs sends no `jobs`: the panel says "no jobs".
  state.jobs = null;
  if (Array.isArray(frame.jobs)) {
    state.jobs = [];
    for (const value of frame.jobs) {
      const job = normJob(value);
      if (job) state.jobs.push(job);
    }
  }
  invalidate();
}

/**
 * Follows one download's bytes, for its speed, elapsed time and stall hint.
 * @param {Task} task
 */
function track(task) {
  if (task.status !== 'downloading') {
    state.progress.delete(task.url);
    return;
  }
  const now = Date.now();
  let p = state.progress.get(task.url);
  if (!p) {
    const started = timeOf(task.startedAt) || timeOf(task.at) || now;
    p = { startedAt: started, lastBytes: task.bytes, lastChange: now, samples: [[now, task.bytes]] };
    state.progress.set(task.url, p);
    return;
  }
  if (task.bytes < p.lastBytes) {
    // A new try starts from 0.
    p.samples = [];
    p.startedAt = timeOf(task.at) || now;
  }
  if (task.bytes !== p.lastBytes) p.lastChange = now;
  p.lastBytes = task.bytes;
  p.samples.push([now, task.bytes]);
  const windowStart = now - SPEED_WINDOW_MS;
  while (p.samples.length > 2 && (p.samples[1]?.[0] ?? now) <= windowStart) p.samples.shift();
}

/**
 * Bytes per second over the last SPEED_WINDOW_MS, or null until there is enough to tell.
 * @param {Progress} p
 * @param {number} now
 */
function speedOf(p, now) {
  const windowStart = now - SPEED_WINDOW_MS;
  let first = p.samples[0];
  for (const sample of p.samples) {
    if (sample[0] <= windowStart) first = sample;
    else break;
  }
  if (!first) return null;
  const seconds = (now - first[0]) / 1000;
  if (seconds < 0.5) return null;
  return Math.max(0, (p.lastBytes - first[1]) / seconds);
}

/** @param {Unchecked<TaskEvent>} frame */
function applyTask(frame) {
  const task = normTask(frame);
  if (!task) return;
  state.lastEvent.delete(task.url);
  state.lastEvent.set(task.url, timeOf(task.at) || Date.now());
  if (state.lastEvent.size > 5000) {
    const oldest = state.lastEvent.keys().next().value;
    if (oldest !== undefined) state.lastEvent.delete(oldest);
  }
  state.busy.delete(task.url);
  if (frame.removed === true) {
    // The entry is gone: it leaves every list.
    state.tasks.delete(task.url);
    state.progress.delete(task.url);
    state.failures.delete(task.url);
    state.finished = state.finished.filter((f) => f.url !== task.url);
  } else if (ACTIVE.has(task.status)) {
    const before = state.tasks.get(task.url);
    // A progress frame does not repeat when the download started or which try it is.
    if (before && task.status === 'downloading') {
      task.startedAt ??= before.status === 'downloading' ? before.startedAt : null;
      task.attempts ??= before.attempts;
    }
    if (task.status === 'downloading' && !task.startedAt && (!before || before.status !== 'downloading')) task.startedAt = task.at;
    state.tasks.set(task.url, task);
    state.failures.delete(task.url);
    track(task);
  } else {
    state.tasks.delete(task.url);
    state.progress.delete(task.url);
    state.finished = [task, ...state.finished.filter((f) => f.url !== task.url)].slice(0, MAX_FINISHED);
    if (FAILED.has(task.status)) {
      state.failures.delete(task.url);
      state.failures.set(task.url, task);
      trimFailures();
    } else {
      // ok (a download, or a custom cover that replaced a failure): no longer a failure.
      state.failures.delete(task.url);
    }
  }
  refreshSoon();
  invalidate();
}

/** @param {Unchecked<StatsFrame>} s */
function applyStats(s) {
  const downloads = /** @type {Unchecked<StatsFrame['downloads']>} */ (record(s.downloads) ?? {});
  const kinds = /** @type {Unchecked<StatsFrame['connectionsByKind']>} */ (record(s.connectionsByKind) ?? {});
  /** @type {Record<string, unknown>} */
  const values = {
    checks: s.checks, urls: s.urls, hits: s.hits, misses: s.misses, coalesced: s.coalesced,
    ok: downloads.ok, error: downloads.error, tle: downloads.tle,
    bytes: s.bytes, queued: s.queued, downloading: s.downloading,
    clients: kinds.client, admins: kinds.admin, legacy: kinds.legacy,
  };
  for (const [key, value] of Object.entries(values)) {
    const n = num(value);
    if (n !== null) state.stats[key] = n;
  }
  applyUpstream(s.upstream);
  if (s.type === 'stats') applyStatus(s.status, s.reasons, s.since, s.why);
  invalidate();
}

/**
 * The upstream hosts of a stats frame (or a snapshot's stats); none when it has no `upstream`.
 * @param {unknown} value
 */
function applyUpstream(value) {
  state.upstream.clear();
  const hosts = record(value);
  if (!hosts) return;
  for (const [host, info] of Object.entries(hosts)) {
    if (state.upstream.size >= MAX_UPSTREAM_HOSTS) break;
    const h = /** @type {Unchecked<import('../../wire/adminStream.js').UpstreamHost>|null} */ (record(info));
    if (!h || (h.state !== 'open' && h.state !== 'cooling')) continue;
    state.upstream.set(host, { host, state: h.state, retryAt: timeOf(h.retryAt), reason: str(h.reason), cooledAt: timeOf(h.cooledAt) });
  }
}

/**
 * @param {unknown} value
 * @returns {Job|null}
 */
function normJob(value) {
  const j = /** @type {Unchecked<JobJson>|null} */ (record(value));
  if (!j || typeof j.id !== 'string') return null;
  return {
    id: j.id,
    name: str(j.name) ?? j.id,
    status: str(j.status) ?? 'queued',
    total: num(j.total) ?? 0,
    ok: num(j.ok) ?? 0,
    failed: num(j.failed) ?? 0,
    waiting: num(j.waiting) ?? 0,
    created: str(j.created),
    expires: str(j.expires),
    archiveUrl: str(j.archiveUrl),
    node: str(j.node),
  };
}

/** @param {Unchecked<JobFrame>} frame */
function applyJob(frame) {
  const job = normJob(frame);
  if (!job) return;
  const jobs = (state.jobs ?? []).filter((j) => j.id !== job.id);
  state.jobs = [job, ...jobs].sort((a, b) => timeOf(b.created) - timeOf(a.created)).slice(0, 50);
  invalidate();
}

function failureList() {
  return [...state.failures.values()].sort((a, b) => timeOf(b.at) - timeOf(a.at));
}
function trimFailures() {
  if (state.failures.size <= MAX_FAILURES) return;
  state.failures = new Map(failureList().slice(0, MAX_FAILURES).map((f) => [f.url, f]));
}

// ---- what the HTTP API adds ----------------------------------------------

/** @param {unknown} answer */
function rowsOf(answer) {
  const a = /** @type {Unchecked<TasksPage>|null} */ (record(answer));
  /** @type {Task[]} */
  const rows = [];
  for (const value of a && Array.isArray(a.tasks) ? a.tasks : []) {
    const task = normTask(value);
    if (task) rows.push(task);
  }
  return rows;
}

/** Recent failures and finished tasks from the task table, merged with what the stream said since. */
async function loadHistory() {
  const token = conn.token;
  try {
    const [errors, tles, recent] = await Promise.all([
      api('GET', `api/tasks?status=error&limit=${MAX_FAILURES}`),
      api('GET', `api/tasks?status=tle&limit=${MAX_FAILURES}`),
      api('GET', `api/tasks?limit=${MAX_FINISHED}`),
    ]);
    if (token !== conn.token) return;
    // Whatever the stream reported after the row was read is newer: it wins.
    /** @param {Task} task */
    const stale = (task) => {
      const seen = state.lastEvent.get(task.url);
      return seen !== undefined && seen >= timeOf(task.at);
    };
    for (const failure of [...rowsOf(errors), ...rowsOf(tles)]) {
      if (stale(failure) || state.tasks.has(failure.url)) continue;
      const known = state.failures.get(failure.url);
      if (!known || timeOf(known.at) < timeOf(failure.at)) state.failures.set(failure.url, failure);
    }
    trimFailures();
    const finished = new Map(state.finished.map((f) => [f.url, f]));
    for (const task of rowsOf(recent)) {
      if (ACTIVE.has(task.status) || stale(task) || state.tasks.has(task.url)) continue;
      const known = finished.get(task.url);
      if (!known || timeOf(known.at) < timeOf(task.at)) finished.set(task.url, task);
    }
    state.finished = [...finished.values()].sort((a, b) => timeOf(b.at) - timeOf(a.at)).slice(0, MAX_FINISHED);
    invalidate();
  } catch (error) {
    if (!(error instanceof AuthError)) notice(`Could not load recent tasks: ${messageOf(error)}`);
  }
}

/** The stored totals (GET /admin/api/summary): they survive restarts, unlike the counters. */
async function loadTotals() {
  try {
    const answer = /** @type {Unchecked<Summary>|null} */ (record(await api('GET', 'api/summary')));
    if (!answer) return;
    const tasks = /** @type {Unchecked<Summary['tasks']>} */ (record(answer.tasks) ?? {});
    const covers = /** @type {Unchecked<Summary['covers']>} */ (record(answer.covers) ?? {});
    /** @type {Record<string, number>} */
    const totals = {};
    for (const status of STATUSES) totals[status] = num(tasks[status]) ?? 0;
    totals.covers = num(covers.count) ?? 0;
    totals.downloadedBytes = num(covers.downloadedBytes) ?? 0;
    state.totals = totals;
    invalidate();
  } catch {
    // Shown as "—" until the next try.
  }
}

let nodesLoadedAt = 0;
async function loadNodes() {
  nodesLoadedAt = Date.now();
  try {
    const answer = /** @type {Unchecked<NodesAnswer>|null} */ (record(await api('GET', 'api/nodes')));
    if (!answer) return;
    state.self = str(answer.self);
    /** @type {NodeInfo[]} */
    const nodes = [];
    for (const value of Array.isArray(answer.nodes) ? answer.nodes : []) {
      const n = /** @type {Unchecked<NodeInfo>|null} */ (record(value));
      if (!n || typeof n.id !== 'string') continue;
      nodes.push({ id: n.id, started: str(n.started), lastSeen: str(n.lastSeen), queued: num(n.queued) ?? 0, downloading: num(n.downloading) ?? 0, status: str(n.status) ?? '?' });
    }
    state.nodes = nodes;
    invalidate();
  } catch {
    // Kept as they were; the next tick tries again.
  }
}

// Task changes set off one fetch of the totals and the task page at most every REFRESH_MS.
let refreshTimer = 0;
let lastRefresh = 0;
function refreshSoon() {
  if (refreshTimer) return;
  const wait = Math.max(0, lastRefresh + REFRESH_MS - Date.now());
  refreshTimer = window.setTimeout(() => {
    refreshTimer = 0;
    lastRefresh = Date.now();
    if (!conn.live) return;
    void loadTotals();
    void loadTaskPage();
  }, wait);
}

// ---- rendering -----------------------------------------------------------

/**
 * The unfinished tasks the stream lists, counted once for every place the page
 * shows them: the Now counters, the Downloading and Waiting panels and the Nodes
 * rows all read this, so no two of them can disagree. A task counts for the node
 * holding it while that node is alive; a task of a gone or stopped node, or one
 * no node holds yet on a shared database, counts as `unassigned` (on one node,
 * that node holds every task).
 */
function nowFigures() {
  /** @type {Task[]} */
  const downloading = [];
  /** @type {Task[]} */
  const waiting = [];
  let queued = 0;
  let unassigned = 0;
  /** @type {Map<string, {queued: number, downloading: number}>} */
  const byNode = new Map();
  const alive = state.nodes.filter((n) => n.status !== 'gone' && n.status !== 'stopped');
  for (const n of alive) byNode.set(n.id, { queued: 0, downloading: 0 });
  const only = alive.length <= 1 ? (alive[0]?.id ?? state.self) : null;
  if (only !== null && !byNode.has(only)) byNode.set(only, { queued: 0, downloading: 0 });
  for (const task of state.tasks.values()) {
    if (task.status === 'downloading') downloading.push(task);
    else {
      waiting.push(task);
      if (task.status === 'queued') queued++;
    }
    const holder = byNode.get(task.node ?? only ?? '');
    if (!holder) unassigned++;
    else if (task.status === 'downloading') holder.downloading++;
    else holder.queued++;
  }
  downloading.sort((a, b) => a.url.localeCompare(b.url));
  waiting.sort((a, b) => timeOf(a.at) - timeOf(b.at));
  return { downloading, waiting, queued, held: waiting.length - queued, byNode, unassigned };
}

let scheduled = false;
function invalidate() {
  if (scheduled) return;
  scheduled = true;
  // rAF pauses in hidden tabs; the timeout keeps the page current anyway.
  const run = () => {
    if (!scheduled) return;
    scheduled = false;
    render();
  };
  requestAnimationFrame(run);
  window.setTimeout(run, 250);
}

/**
 * Keeps one child per key, in the given order, reusing existing nodes.
 * @template T
 * @param {HTMLElement} container
 * @param {T[]} items
 * @param {(item: T) => string} keyOf
 * @param {(item: T) => HTMLElement} create
 * @param {(node: HTMLElement, item: T) => void} update
 */
function reconcile(container, items, keyOf, create, update) {
  /** @type {Map<string, HTMLElement>} */
  const existing = new Map();
  for (const child of container.children) if (child instanceof HTMLElement) existing.set(child.dataset.key ?? '', child);
  let cursor = container.firstElementChild;
  for (const item of items) {
    const key = keyOf(item);
    let node = existing.get(key);
    if (node) existing.delete(key);
    else {
      node = create(item);
      node.dataset.key = key;
    }
    update(node, item);
    if (node !== cursor) container.insertBefore(node, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const node of existing.values()) node.remove();
}

function renderStatus() {
  /** @type {string} */
  let text;
  /** @type {string} */
  let kind;
  if (!conn.token) [text, kind] = ['not connected', 'unknown'];
  else if (conn.live) [text, kind] = [state.status ?? 'connecting', state.status ?? 'connecting'];
  else if (conn.everLive) [text, kind] = ['disconnected', 'disconnected'];
  else [text, kind] = ['connecting', 'connecting'];
  setText(ui.status, text);
  ui.status.dataset.status = kind;
  ui.status.title = conn.live ? 'Service status' : state.status ? `Not connected; the service last said ${state.status}` : 'Not connected';
  // Why it is tardy or paused is in the banner under the header (renderGate).
  setText(ui.reasons, '');
  // Buttons match the state: each does something only when it can.
  ui.pause.disabled = !conn.live || state.status === 'paused' || pausing;
  ui.resume.disabled = !conn.live || state.status !== 'paused' || pausing;
}

/** @param {number} n */
const pad2 = (n) => String(n).padStart(2, '0');
/** @param {number} ms  a wall time, shown as the browser's local HH:MM:SS */
function clockTime(ms) {
  const d = new Date(ms);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/**
 * What a cooling host's banner says.
 * @param {UpstreamHost} h
 */
function upstreamText(h) {
  const head = `${h.host} is cooling (${h.reason ?? 'refused'})`;
  const tail = 'its URLs are answered upstream_limited and fetched after';
  const left = Math.ceil((h.retryAt - Date.now()) / 1000);
  const text =
    h.retryAt && left > 0
      ? `${head} — nothing is sent to it until ${clockTime(h.retryAt)} (in ${left} s); ${tail}`
      : `${head} — reopening: one probe request is let through; ${tail}`;
  // Nothing shown is left to look current when it is not.
  return conn.live ? text : `Last known (disconnected): ${text}`;
}

/**
 * What the paused or tardy banner says: since when (the browser's local time, and
 * how long ago) and why (tardy: the limits passed; paused: who paused); null when
 * downloads are not held.
 */
function gateText() {
  if (state.status !== 'paused' && state.status !== 'tardy') return null;
  const since = state.since ? ` since ${clockTime(state.since)} (${formatDuration(Date.now() - state.since)} ago)` : '';
  const text =
    state.status === 'paused'
      ? `Downloads are paused${since}: ${state.why ?? 'paused by the administrator'}. New downloads wait (held) until Resume.`
      : `Downloads are held: the service is tardy${since}, ${state.why ?? `over a resource limit: ${state.reasons.join('; ') || 'not said'}`}. New downloads wait (held) until it is back under its limits.`;
  return conn.live ? text : `Last known (disconnected): ${text}`;
}

/** The paused or tardy banner under the header, the way the disconnected state shows. */
function renderGate() {
  const text = conn.token && (conn.live || conn.everLive) ? gateText() : null;
  ui.gateBanner.hidden = text === null;
  ui.gateBanner.dataset.status = state.status ?? '';
  setText(ui.gateBanner, text ?? '');
}

/** One banner per cooling host, gone when the host reopens. */
function renderUpstream() {
  const cooling = [...state.upstream.values()].filter((h) => h.state === 'cooling').sort((a, b) => (a.host < b.host ? -1 : 1));
  reconcile(
    ui.upstream,
    cooling,
    (h) => h.host,
    (h) => {
      const p = make('p', 'notice info upstream-banner');
      p.dataset.host = h.host;
      return p;
    },
    (p, h) => setText(p, upstreamText(h)),
  );
}

function render() {
  renderStatus();
  renderGate();
  renderUpstream();
  for (const [key, cell] of statCells) {
    const value = state.stats[key];
    if (typeof value !== 'number') {
      setText(cell, '—');
      delete cell.dataset.value;
      continue;
    }
    setText(cell, key === 'bytes' ? formatBytes(value) : value);
    cell.dataset.value = String(value);
  }
  const now = nowFigures();
  /** @type {Record<string, number>} */
  const nowValues = { downloading: now.downloading.length, queued: now.queued, held: now.held };
  for (const [key, cell] of nowCells) {
    const value = nowValues[key];
    // Before the first snapshot nothing is known.
    const known = conn.gotFrame && typeof value === 'number';
    setText(cell, known ? value : '—');
    if (known) cell.dataset.value = String(value);
    else delete cell.dataset.value;
  }
  for (const [key, cell] of totalCells) {
    const value = state.totals?.[key];
    if (typeof value !== 'number') {
      setText(cell, '—');
      continue;
    }
    setText(cell, key === 'downloadedBytes' ? formatBytes(value) : value);
    cell.dataset.value = String(value);
  }

  renderRunning(now);

  // Each unfinished task is in one list only: downloading above, the rest here.
  const { waiting, queued } = now;
  setText(ui.queueCount, waiting.length);
  setText(ui.queuedCount, queued);
  setText(ui.waitingCount, now.held);
  // Held: waiting for the gate, which says why (paused, or tardy over a limit).
  setText(ui.heldLabel, state.status === 'paused' ? 'held (paused)' : state.status === 'tardy' ? 'held (tardy: over a resource limit)' : 'held');
  reconcile(ui.queue, waiting.slice(0, MAX_QUEUE_ROWS), (t) => t.url, createQueueRow, updateQueueRow);
  ui.queueEmpty.hidden = waiting.length > 0;
  ui.queueMore.hidden = waiting.length <= MAX_QUEUE_ROWS;
  setText(ui.queueMore, `and ${waiting.length - MAX_QUEUE_ROWS} more`);

  reconcile(ui.finished, state.finished, (t) => t.url, createFinishedRow, updateFinishedRow);
  ui.finishedEmpty.hidden = state.finished.length > 0;

  const failures = failureList();
  reconcile(ui.failures, failures, (t) => t.url, createFailureRow, updateFailureRow);
  setText(ui.failuresCount, failures.length);
  ui.failuresEmpty.hidden = failures.length > 0;
  const storedFailures = state.totals ? (state.totals.error ?? 0) + (state.totals.tle ?? 0) : 0;
  ui.retryAll.disabled = !conn.live || retryingAll || (failures.length === 0 && storedFailures === 0);

  ui.upload.disabled = !conn.live || uploading;
  ui.deleteCover.disabled = !conn.live || removing;
  renderNodes(now);
  renderJobs();
  renderTaskPage();
  renderDetailButtons();
}

/** The most characters a URL is shown with in a row; a longer one is shortened in the middle. */
const URL_CHARS = 64;

/**
 * A URL as a row shows it: `head` (its beginning: the host) and `tail` (its end:
 * the file name with the query, where URLs that share a long beginning differ).
 * A URL longer than `max` is shortened in the middle to `host/…` and its end:
 * the file name (its end, when the name alone is too long) and the folders
 * before it that fit; a shorter one is split before its last `/`. When the row is
 * narrower still, the style gives the head up first (cut at its end) and then
 * the tail (cut at its start), so the file name stays in sight. The whole URL is
 * in the title and in the detail view.
 * @param {string} url
 * @param {number} [max]
 * @returns {{head: string, tail: string}}
 */
function shortUrl(url, max = URL_CHARS) {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)?([^/?#]*)(.*)$/i.exec(url);
  const rest = m?.[3] ?? '';
  const queryAt = rest.search(/[?#]/);
  const path = queryAt < 0 ? rest : rest.slice(0, queryAt);
  const slash = path.lastIndexOf('/');
  if (url.length <= max) {
    const cut = url.length - rest.length + Math.max(0, slash);
    return { head: url.slice(0, cut), tail: url.slice(cut) };
  }
  const host = (m?.[2] ?? '').slice(0, 40);
  const file = rest.slice(slash + 1);
  const room = Math.max(12, max - host.length - 2);
  if (file.length >= room) return { head: `${host}/…`, tail: file.slice(-room) };
  // The file name, and as much of the folders before it as fits, from a `/`.
  const end = rest.slice(-room);
  const from = end.indexOf('/');
  return { head: `${host}/…`, tail: from >= 0 && end.length - from > file.length ? end.slice(from) : `/${file}` };
}

/**
 * The URL of a row, as a button that opens the detail view: shortened in the
 * middle (shortUrl), the whole URL in its title.
 * @param {string} url
 */
function urlButton(url) {
  const b = make('button', 'url-button');
  const { head, tail } = shortUrl(url);
  b.append(make('span', 'url-head', head));
  if (tail) {
    const end = make('span', 'url-tail');
    end.append(make('bdi', '', tail));
    b.append(end);
  }
  b.type = 'button';
  b.title = url;
  b.setAttribute('aria-label', `Details of ${url}`);
  b.addEventListener('click', () => void openDetail(url));
  return b;
}

/**
 * A small row button that calls `action` with the row's URL.
 * @param {string} className
 * @param {string} label
 * @param {string} url
 * @param {(url: string) => Promise<void>} action
 */
function rowButton(className, label, url, action) {
  const b = make('button', `${className} secondary`, label);
  b.type = 'button';
  b.setAttribute('aria-label', `${label} ${url}`);
  b.addEventListener('click', () => void action(url));
  return b;
}

/** @param {Task} task */
function createRunningRow(task) {
  const li = make('li');
  li.dataset.url = task.url;
  const actions = make('span', 'row-actions');
  actions.append(rowButton('cancel', 'Cancel', task.url, cancelDownload));
  const facts = make('div', 'facts-line');
  facts.append(make('span', 'amount'), make('span', 'speed'), make('span', 'elapsed'), make('span', 'node'), make('span', 'stall'));
  const bar = make('progress');
  bar.setAttribute('aria-label', `Download progress of ${task.url}`);
  li.append(urlButton(task.url), make('span', 'try'), actions, bar, facts);
  return li;
}

/** @param {HTMLElement} li @param {Task} task */
function updateRunningRow(li, task) {
  const now = Date.now();
  const bar = part(li, 'progress', HTMLProgressElement);
  const amount = part(li, '.amount', HTMLElement);
  if (task.total !== null && task.total > 0) {
    bar.max = task.total;
    bar.value = Math.min(task.bytes, task.total);
    setText(amount, `${formatBytes(task.bytes)} / ${formatBytes(task.total)} · ${Math.floor((100 * Math.min(task.bytes, task.total)) / task.total)}%`);
  } else {
    bar.removeAttribute('value'); // indeterminate
    setText(amount, task.bytes > 0 ? `${formatBytes(task.bytes)} / ?` : 'starting…');
  }
  setText(part(li, '.try', HTMLElement), task.attempts && task.attempts > 1 ? `try ${task.attempts}` : '');
  setText(part(li, '.node', HTMLElement), task.node ? `on ${task.node}${task.node === state.self ? ' (this node)' : ''}` : '');
  const p = state.progress.get(task.url);
  const speed = part(li, '.speed', HTMLElement);
  const elapsed = part(li, '.elapsed', HTMLElement);
  const stall = part(li, '.stall', HTMLElement);
  // Cancel works on the node that runs the download (another node answers 409).
  part(li, 'button.cancel', HTMLButtonElement).disabled =
    !conn.live || state.busy.get(task.url) === 'pending' || (task.node !== null && state.self !== null && task.node !== state.self && state.nodes.length > 1);
  if (!conn.live) {
    li.dataset.stalled = 'unknown';
    // The page no longer hears from the service: no figure pretends to be current.
    setText(speed, 'speed unknown (disconnected)');
    setText(elapsed, p ? `started ${formatTime(new Date(p.startedAt).toISOString())}` : '');
    setText(stall, '');
    return;
  }
  const bps = p ? speedOf(p, now) : null;
  setText(speed, bps === null ? 'speed …' : `${formatBytes(bps)}/s`);
  setText(elapsed, p ? `${formatDuration(now - p.startedAt)} elapsed` : '');
  const still = p ? now - p.lastChange : 0;
  setText(stall, p && still >= STALL_MS ? `stalled: no bytes for ${formatDuration(still)}` : '');
  li.dataset.stalled = String(Boolean(p && still >= STALL_MS));
}

/** @param {ReturnType<typeof nowFigures>} [now] */
function renderRunning(now = nowFigures()) {
  const running = now.downloading;
  reconcile(ui.running, running, (t) => t.url, createRunningRow, updateRunningRow);
  setText(ui.runningCount, running.length);
  ui.runningEmpty.hidden = running.length > 0;
}

/** @param {Task} task */
function createQueueRow(task) {
  const li = make('li');
  li.dataset.url = task.url;
  const actions = make('span', 'row-actions');
  actions.append(rowButton('cancel', 'Cancel', task.url, cancelDownload));
  li.append(make('span', 'badge'), urlButton(task.url), make('time', 'when'), actions);
  return li;
}

/** @param {HTMLElement} li @param {Task} task */
function updateQueueRow(li, task) {
  li.dataset.status = task.status;
  const badge = part(li, '.badge', HTMLElement);
  badge.dataset.status = task.status;
  setText(badge, task.status === 'waiting' ? 'held' : task.status);
  const when = part(li, '.when', HTMLElement);
  when.setAttribute('datetime', task.at);
  setText(when, formatTime(task.at));
  part(li, 'button.cancel', HTMLButtonElement).disabled = !conn.live || state.busy.get(task.url) === 'pending';
}

/** @param {Task} task */
function createFinishedRow(task) {
  const li = make('li');
  li.dataset.url = task.url;
  li.append(make('span', 'badge'), urlButton(task.url), make('time', 'when'), make('span', 'detail bad'));
  return li;
}

/** @param {HTMLElement} li @param {Task} task */
function updateFinishedRow(li, task) {
  li.dataset.status = task.status;
  const badge = part(li, '.badge', HTMLElement);
  badge.dataset.status = task.status;
  setText(badge, task.status);
  const when = part(li, '.when', HTMLElement);
  when.setAttribute('datetime', task.at);
  setText(when, formatTime(task.at));
  const detail = part(li, '.detail', HTMLElement);
  const text = task.error && FAILED.has(task.status) ? `${task.error.code}${task.error.message ? `: ${task.error.message}` : ''}` : '';
  setText(detail, text);
  detail.hidden = !text;
}

/** @param {Task} task */
function createFailureRow(task) {
  const li = make('li');
  li.dataset.url = task.url;
  const actions = make('span', 'row-actions');
  actions.append(rowButton('retry', 'Retry', task.url, retry));
  li.append(make('span', 'badge code'), urlButton(task.url), actions, make('span', 'detail'));
  return li;
}

/** @param {HTMLElement} li @param {Task} task */
function updateFailureRow(li, task) {
  li.dataset.status = task.status;
  const badge = part(li, '.badge', HTMLElement);
  badge.dataset.status = task.status;
  setText(badge, task.error ? task.error.code : task.status);
  const busy = state.busy.get(task.url);
  const b = part(li, 'button.retry', HTMLButtonElement);
  b.disabled = !conn.live || busy === 'pending';
  setText(b, busy === 'pending' ? 'Retrying…' : 'Retry');
  const detail = part(li, '.detail', HTMLElement);
  const failed = busy && busy !== 'pending' ? ` — retry failed: ${busy}` : '';
  const tries = task.attempts ? ` · ${task.attempts} ${task.attempts === 1 ? 'try' : 'tries'}` : '';
  setText(detail, `${task.error?.message || task.status}${tries} · ${formatTime(task.at)}${failed}`);
  detail.classList.toggle('bad', Boolean(failed));
}

/**
 * The nodes (GET /admin/api/nodes) with the work each holds now, counted from the
 * stream's tasks like the counters and panels above (a gone or stopped node holds
 * none); this node's status is the stream's.
 * @param {ReturnType<typeof nowFigures>} [now]
 */
function renderNodes(now = nowFigures()) {
  const rows = state.nodes.map((n) => {
    const dead = n.status === 'gone' || n.status === 'stopped';
    const work = dead ? undefined : now.byNode.get(n.id);
    return {
      ...n,
      status: n.id === state.self && conn.live && state.status ? state.status : n.status,
      queued: work?.queued ?? 0,
      downloading: work?.downloading ?? 0,
    };
  });
  reconcile(ui.nodes, rows, (n) => n.id, createNodeRow, updateNodeRow);
  setText(ui.nodesCount, state.nodes.length);
  const alive = state.nodes.filter((n) => n.status !== 'gone' && n.status !== 'stopped').length;
  const unassigned = now.unassigned > 0 ? ` ${now.unassigned} unfinished ${now.unassigned === 1 ? 'task is' : 'tasks are'} held by no live node yet.` : '';
  setText(
    ui.nodesHint,
    (state.nodes.length === 0
      ? 'No node is known yet.'
      : state.nodes.length === 1
        ? 'One node: every download runs here. Queued (with held) and downloading are the tasks listed above.'
        : `${alive} of ${state.nodes.length} nodes alive on the shared database; each download shows the node that runs it. Queued (with held) and downloading are the tasks listed above, by the node holding them; a gone or stopped node holds none.`) + unassigned,
  );
}

/** @param {NodeInfo} node */
function createNodeRow(node) {
  const tr = make('tr');
  tr.dataset.node = node.id;
  const name = make('td', 'mono');
  name.append(make('span', 'id', node.id), make('span', 'self'));
  const status = make('td');
  status.append(make('span', 'badge'));
  tr.append(name, status, make('td', 'started'), make('td', 'seen'), make('td', 'num queued'), make('td', 'num downloading'));
  return tr;
}

/** @param {HTMLElement} tr @param {NodeInfo} node */
function updateNodeRow(tr, node) {
  setText(part(tr, '.self', HTMLElement), node.id === state.self ? 'this node' : '');
  const badge = part(tr, '.badge', HTMLElement);
  badge.dataset.status = node.status;
  setText(badge, node.status);
  setText(part(tr, '.started', HTMLElement), formatTime(node.started));
  setText(part(tr, '.seen', HTMLElement), ago(node.lastSeen));
  setText(part(tr, '.queued', HTMLElement), node.queued);
  setText(part(tr, '.downloading', HTMLElement), node.downloading);
}

function renderJobs() {
  const jobs = state.jobs ?? [];
  reconcile(ui.jobs, jobs, (j) => j.id, createJobRow, updateJobRow);
  setText(ui.jobsCount, jobs.length);
  ui.jobsEmpty.hidden = jobs.length > 0;
}

/** @param {Job} job */
function createJobRow(job) {
  const li = make('li');
  li.dataset.job = job.id;
  li.append(make('span', 'badge'), make('span', 'url name'), make('span', 'link-cell'), make('progress'), make('span', 'detail'));
  return li;
}

/** @param {HTMLElement} li @param {Job} job */
function updateJobRow(li, job) {
  const badge = part(li, '.badge', HTMLElement);
  badge.dataset.status = job.status;
  setText(badge, job.status);
  setText(part(li, '.name', HTMLElement), job.name);
  const bar = part(li, 'progress', HTMLProgressElement);
  const done = job.ok + job.failed;
  bar.max = Math.max(1, job.total);
  bar.value = Math.min(done, bar.max);
  setText(
    part(li, '.detail', HTMLElement),
    `${done} / ${job.total} (${job.failed} failed${job.waiting ? `, ${job.waiting} waiting for a cooling host` : ''})${job.node ? ` · on ${job.node}` : ''} · created ${formatTime(job.created)}${job.expires ? ` · expires ${formatTime(job.expires)}` : ''}`,
  );
  const cell = part(li, '.link-cell', HTMLElement);
  const href = job.status === 'ready' ? safeHref(job.archiveUrl) : null;
  const current = cell.querySelector('a');
  if (href && current?.href !== href) {
    const a = make('a', '', 'download');
    a.href = href;
    a.rel = 'noopener noreferrer';
    cell.replaceChildren(a);
  } else if (!href && current) {
    cell.replaceChildren();
  }
}

// ---- row actions ---------------------------------------------------------

/** @param {string} url */
async function retry(url) {
  state.busy.set(url, 'pending');
  invalidate();
  try {
    await api('POST', `api/retry?url=${q(url)}`);
    // The task changes that follow move the URL out of the failures.
  } catch (error) {
    if (error instanceof AuthError) return;
    state.busy.set(url, messageOf(error));
    invalidate();
  }
}

/** @param {string} url */
async function cancelDownload(url) {
  state.busy.set(url, 'pending');
  invalidate();
  try {
    await api('POST', `api/cancel?url=${q(url)}`);
    // The task ends as error `cancelled`: its change moves it to the failures.
  } catch (error) {
    if (error instanceof AuthError) return;
    state.busy.delete(url);
    notice(`Cancel failed: ${messageOf(error)}`);
    invalidate();
  }
}

let retryingAll = false;
ui.retryAll.addEventListener('click', () => {
  void (async () => {
    retryingAll = true;
    invalidate();
    try {
      const answer = record(await api('POST', 'api/retry-failed'));
      const n = num(answer?.retried) ?? 0;
      setText(ui.retryAllResult, `${n} failed ${n === 1 ? 'task' : 'tasks'} started again`);
      for (const url of state.failures.keys()) state.busy.set(url, 'pending');
    } catch (error) {
      if (!(error instanceof AuthError)) setText(ui.retryAllResult, `Retry all failed: ${messageOf(error)}`);
    } finally {
      retryingAll = false;
      invalidate();
    }
  })();
});

let pausing = false;
/** @param {boolean} paused */
async function setPaused(paused) {
  pausing = true;
  invalidate();
  try {
    const answer = record(await api('POST', paused ? 'api/pause' : 'api/resume'));
    if (answer) applyStatus(answer.status, answer.reasons);
    notice('');
  } catch (error) {
    if (!(error instanceof AuthError)) notice(`${paused ? 'Pause' : 'Resume'} failed: ${messageOf(error)}`);
  } finally {
    pausing = false;
    invalidate();
  }
}
ui.pause.addEventListener('click', () => void setPaused(true));
ui.resume.addEventListener('click', () => void setPaused(false));
ui.logout.addEventListener('click', () => {
  stopSocket();
  conn.token = null;
  conn.everLive = false;
  sessionStorage.removeItem(TOKEN_KEY);
  ui.token.value = '';
  notice('');
  showLogin('');
});

ui.loginForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const token = ui.token.value.trim();
  if (!token) {
    setText(ui.loginError, 'Enter the admin token.');
    ui.token.focus();
    return;
  }
  start(token);
});

/**
 * Asks before a stored cover is removed; true when the administrator agrees.
 * @param {string} url
 */
function confirmRemoval(url) {
  return window.confirm(`Remove the stored cover of\n${url}\n\nThe entry and its file are deleted; the next check downloads the cover again.`);
}

/**
 * DELETE /admin/api/covers, after asking. Resolves with a message, or null when not confirmed.
 * @param {string} url
 */
async function removeCover(url) {
  if (!confirmRemoval(url)) return null;
  await api('DELETE', `api/covers?url=${q(url)}`);
  state.failures.delete(url);
  invalidate();
  return `The stored cover of ${url} will be removed; the next check downloads it again.`;
}

// ---- custom covers -------------------------------------------------------

/** @param {string} kind @param {...(Node|string)} children */
function uploadMessage(kind, ...children) {
  ui.uploadResult.replaceChildren(...children);
  ui.uploadResult.className = kind;
}

function targetUrl() {
  const value = ui.uploadUrl.value.trim();
  const href = safeHref(value);
  if (href && /^https?:\/\//i.test(value)) return value;
  uploadMessage('bad', 'Enter the http(s) URL whose cover this image replaces.');
  ui.uploadUrl.focus();
  return null;
}

let uploading = false;
let removing = false;
ui.uploadForm.addEventListener('submit', (event) => {
  event.preventDefault();
  void (async () => {
    const url = targetUrl();
    if (!url) return;
    const file = ui.uploadFile.files?.[0];
    if (!file) {
      uploadMessage('bad', 'Choose an image file.');
      ui.uploadFile.focus();
      return;
    }
    uploading = true;
    invalidate();
    uploadMessage('', `Uploading ${file.name} (${formatBytes(file.size)})…`);
    try {
      const answer = record(await api('PUT', `api/covers?url=${q(url)}`, { body: file, headers: { 'content-type': file.type || 'application/octet-stream' } }));
      const href = safeHref(answer?.coverUrl);
      if (!answer || !href) throw new Error('the server answered without a cover URL');
      // The upload replaced whatever failure the URL had (its task change says so too).
      state.failures.delete(url);
      invalidate();
      const link = make('a', '', String(answer.coverUrl));
      link.href = href;
      link.target = '_blank';
      link.rel = 'noopener noreferrer';
      const img = make('img');
      img.src = href;
      img.alt = `Custom cover for ${url}`;
      img.width = 320;
      const p = make('p');
      p.append(link);
      uploadMessage('ok', make('p', '', `Stored as the ${str(answer.source) ?? 'custom'} cover of ${str(answer.url) ?? url}.`), p, img);
    } catch (error) {
      if (error instanceof AuthError) {
        uploadMessage('bad', 'wrong token');
        return;
      }
      uploadMessage('bad', `Upload failed: ${messageOf(error)}${error instanceof ApiError && error.code ? ` (${error.code})` : ''}`);
    } finally {
      uploading = false;
      invalidate();
    }
  })();
});

ui.deleteCover.addEventListener('click', () => {
  void (async () => {
    const url = targetUrl();
    if (!url) return;
    removing = true;
    invalidate();
    try {
      const message = await removeCover(url);
      uploadMessage(message ? 'ok' : '', message ?? 'Nothing removed.');
    } catch (error) {
      if (error instanceof AuthError) {
        uploadMessage('bad', 'wrong token');
        return;
      }
      uploadMessage('bad', `Remove failed: ${messageOf(error)}`);
    } finally {
      removing = false;
      invalidate();
    }
  })();
});

// ---- the task list: search, filter, pages -------------------------------

/** The All tasks page's filters, fetch-now and clear-failed controls. */
const tasksUi = {
  code: select('task-code'), host: input('task-host'), sort: select('task-sort'),
  fetchForm: byId('task-fetch', HTMLFormElement), fetchUrl: input('fetch-url'), fetchGo: button('fetch-go'),
  clearFailed: button('clear-failed'), result: elem('task-tools-result'), detailLink: byId('detail-link', HTMLAnchorElement),
};

const page = {
  q: '',
  status: '',
  /** an error code (`code=`), or '' for any */
  code: '',
  /** a host name (`host=`), or '' for any */
  host: '',
  /** `changed` (newest first) or `tries` (most first) */
  sort: 'changed',
  limit: 25,
  offset: 0,
  total: 0,
  /** @type {Task[]} */
  rows: [],
  /** bumps with each query, so a late answer never replaces a newer one */
  seq: 0,
  loaded: false,
  /** the offset `rows` were loaded at (until the next page comes, the label names what is shown) */
  rowsOffset: 0,
};

async function loadTaskPage() {
  const seq = ++page.seq;
  const params = new URLSearchParams({ limit: String(page.limit), offset: String(page.offset) });
  if (page.q) params.set('q', page.q);
  if (page.status) params.set('status', page.status);
  if (page.code) params.set('code', page.code);
  if (page.host) params.set('host', page.host);
  if (page.sort !== 'changed') params.set('sort', page.sort);
  try {
    const answer = await api('GET', `api/tasks?${params.toString()}`);
    if (seq !== page.seq) return;
    const total = num(/** @type {Unchecked<TasksPage>|null} */ (record(answer))?.total) ?? 0;
    // The list shrank under the current page (tasks finished or were removed): go back to the last page.
    if (page.offset > 0 && page.offset >= total) {
      page.offset = Math.max(0, Math.floor((total - 1) / page.limit) * page.limit);
      return loadTaskPage();
    }
    page.rows = rowsOf(answer);
    page.rowsOffset = page.offset;
    page.total = total;
    page.loaded = true;
    invalidate();
  } catch (error) {
    if (seq === page.seq && !(error instanceof AuthError)) setText(ui.tasksPage, `Could not load tasks: ${messageOf(error)}`);
  }
}

function renderTaskPage() {
  // A row on this page follows the stream at once; the next fetch puts the page in order.
  const rows = page.rows.map((row) => {
    const live = state.tasks.get(row.url);
    const seen = state.lastEvent.get(row.url);
    if (live && seen !== undefined && seen >= timeOf(row.at)) return { ...row, status: live.status, error: live.error };
    const failure = state.failures.get(row.url);
    if (failure && timeOf(failure.at) > timeOf(row.at)) return { ...row, status: failure.status, error: failure.error };
    return row;
  });
  reconcile(ui.tasks, rows, (t) => t.url, createTaskRow, updateTaskRow);
  ui.tasksEmpty.hidden = !page.loaded || rows.length > 0;
  setText(ui.tasksTotal, page.loaded ? `${page.total}` : '');
  const first = page.total === 0 ? 0 : page.rowsOffset + 1;
  const last = Math.min(page.total, page.rowsOffset + rows.length);
  if (page.loaded) setText(ui.tasksPage, page.total === 0 ? 'no tasks' : `${first}–${last} of ${page.total}`);
  ui.tasksPrev.disabled = page.offset === 0;
  ui.tasksNext.disabled = page.offset + page.limit >= page.total;
  renderTaskTools();
}

/** @param {Task} task */
function createTaskRow(task) {
  const tr = make('tr');
  tr.dataset.url = task.url;
  const status = make('td');
  status.append(make('span', 'badge'));
  const url = make('td', 'url-cell');
  url.append(urlButton(task.url), taskLink(task.url));
  tr.append(status, url, make('td', 'num tries'), make('td', 'err'), make('td', 'mono node'), make('td', 'when'));
  return tr;
}

/** @param {HTMLElement} tr @param {Task} task */
function updateTaskRow(tr, task) {
  tr.dataset.status = task.status;
  const badge = part(tr, '.badge', HTMLElement);
  badge.dataset.status = task.status;
  setText(badge, task.status === 'waiting' ? 'held' : task.status);
  setText(part(tr, '.tries', HTMLElement), task.attempts ?? '');
  setText(part(tr, '.err', HTMLElement), task.error && FAILED.has(task.status) ? `${task.error.code}${task.error.message ? `: ${task.error.message}` : ''}` : '');
  setText(part(tr, '.node', HTMLElement), task.node ?? '—');
  setText(part(tr, '.when', HTMLElement), formatTime(task.at));
}

ui.taskSearch.addEventListener('submit', (event) => {
  event.preventDefault();
  page.q = ui.taskQ.value.trim().slice(0, 2048);
  page.status = ui.taskStatus.value;
  page.code = tasksUi.code.value;
  page.host = tasksUi.host.value.trim().toLowerCase().slice(0, 255);
  page.sort = tasksUi.sort.value === 'tries' ? 'tries' : 'changed';
  page.limit = Number(ui.taskLimit.value) || 25;
  page.offset = 0;
  void loadTaskPage();
});
for (const control of [ui.taskStatus, ui.taskLimit, tasksUi.code, tasksUi.sort]) control.addEventListener('change', () => ui.taskSearch.requestSubmit());
ui.tasksPrev.addEventListener('click', () => {
  page.offset = Math.max(0, page.offset - page.limit);
  void loadTaskPage();
});
ui.tasksNext.addEventListener('click', () => {
  if (page.offset + page.limit < page.total) page.offset += page.limit;
  void loadTaskPage();
});

// ---- the task list: links, fetch now, clear failed ----------------------


/** The longest URL the service takes (as the protocol says). */
const MAX_TASK_URL = 8192;
const TASK_HASH = '#task=';
let fetching = false;
let clearing = false;

/**
 * The page's link to a task's detail: `#task=<encoded url>`.
 * @param {string} url
 */
function taskHref(url) {
  return `${TASK_HASH}${encodeURIComponent(url)}`;
}

/**
 * The task a `#task=` hash names: an http(s) URL, or null for anything else
 * (the hash is whatever a link said: decoded with care, never trusted).
 * @param {string} hash
 * @returns {string|null}
 */
function taskOfHash(hash) {
  if (!hash.startsWith(TASK_HASH) || hash.length > TASK_HASH.length + 3 * MAX_TASK_URL) return null;
  /** @type {string} */
  let url;
  try {
    url = decodeURIComponent(hash.slice(TASK_HASH.length));
  } catch {
    return null;
  }
  if (url === '' || url.length > MAX_TASK_URL) return null;
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? url : null;
  } catch {
    return null;
  }
}

/**
 * A row's link to its task's detail (the address to keep or send).
 * @param {string} url
 */
function taskLink(url) {
  const a = make('a', 'task-link', 'link');
  a.href = taskHref(url);
  a.title = `Link to the detail of ${url}`;
  a.setAttribute('aria-label', `Link to ${url}`);
  return a;
}

/** Opens the detail the page's hash names, once the token is known. */
function openFromHash() {
  if (!conn.token) return;
  const url = taskOfHash(location.hash);
  if (url === null) return;
  if (ui.detail.open && detail.url === url) return;
  void openDetail(url);
}
window.addEventListener('hashchange', openFromHash);

function renderTaskTools() {
  tasksUi.fetchGo.disabled = !conn.live || fetching;
  tasksUi.clearFailed.disabled = !conn.live || clearing;
}

/** @param {string} kind @param {...(Node|string)} children */
function taskToolsMessage(kind, ...children) {
  tasksUi.result.replaceChildren(...children);
  tasksUi.result.className = `hint ${kind}`.trim();
}

/** Loads the task page again a little later (the download's first change is written by then). */
function reloadTaskPageSoon() {
  window.setTimeout(() => void loadTaskPage(), 300);
}

tasksUi.fetchForm.addEventListener('submit', (event) => {
  event.preventDefault();
  void (async () => {
    const url = tasksUi.fetchUrl.value.trim();
    if (!/^https?:\/\//i.test(url) || url.length > MAX_TASK_URL) {
      taskToolsMessage('bad', 'Enter the http(s) URL to fetch.');
      tasksUi.fetchUrl.focus();
      return;
    }
    fetching = true;
    invalidate();
    try {
      const answer = record(await api('POST', `api/fetch?url=${q(url)}`));
      const status = str(answer?.status);
      const link = taskLink(url);
      setText(link, 'its task');
      if (status === 'ok') taskToolsMessage('ok', 'Stored already: ', link, '.');
      else if (status === 'in_flight') taskToolsMessage('ok', 'Being fetched already: ', link, '.');
      else taskToolsMessage('ok', 'Fetching now: ', link, '.');
      reloadTaskPageSoon();
    } catch (error) {
      if (error instanceof AuthError) return taskToolsMessage('bad', 'wrong token');
      taskToolsMessage('bad', `Not fetched: ${messageOf(error)}`);
    } finally {
      fetching = false;
      invalidate();
    }
  })();
});

/** Asks before failed tasks are forgotten; true when the administrator agrees. */
function confirmClearFailed() {
  return window.confirm('Forget every failed task (error and tle)?\n\nTheir rows and timelines are deleted; the next check of such a URL downloads it again.');
}

tasksUi.clearFailed.addEventListener('click', () => {
  void (async () => {
    if (!confirmClearFailed()) {
      taskToolsMessage('', 'Nothing cleared.');
      return;
    }
    clearing = true;
    invalidate();
    try {
      const answer = record(await api('POST', 'api/clear-failed'));
      const removed = num(answer?.removed) ?? 0;
      taskToolsMessage('ok', `${removed} failed ${removed === 1 ? 'task' : 'tasks'} forgotten${answer?.more === true ? '; more are left: clear again' : ''}.`);
      void loadTotals();
      reloadTaskPageSoon();
    } catch (error) {
      if (error instanceof AuthError) return taskToolsMessage('bad', 'wrong token');
      taskToolsMessage('bad', `Clear failed: ${messageOf(error)}`);
    } finally {
      clearing = false;
      invalidate();
    }
  })();
});

// A closed detail lets go of its link, so the same link opens it again.
ui.detail.addEventListener('close', () => {
  if (location.hash.startsWith(TASK_HASH)) window.history.replaceState(null, '', `${location.pathname}${location.search}`);
});

// ---- the detail view -----------------------------------------------------

const detail = {
  /** @type {string|null} */
  url: null,
  /** @type {TaskStatus|null} */
  status: null,
  hasCover: false,
  seq: 0,
};

/** @param {string} url */
async function openDetail(url) {
  detail.url = url;
  detail.status = null;
  detail.hasCover = false;
  const seq = ++detail.seq;
  setText(ui.detailUrl, url);
  tasksUi.detailLink.href = taskHref(url);
  setText(ui.detailResult, '');
  ui.detailLoading.hidden = false;
  setText(ui.detailLoading, 'loading…');
  ui.detailFacts.hidden = true;
  ui.detailTimeline.replaceChildren();
  ui.detailTimelineEmpty.hidden = true;
  renderDetailButtons();
  if (!ui.detail.open) ui.detail.showModal();
  try {
    const answer = record(await api('GET', `api/task?url=${q(url)}`));
    if (seq !== detail.seq || !answer) return;
    showDetail(answer);
  } catch (error) {
    if (seq !== detail.seq) return;
    setText(ui.detailLoading, error instanceof ApiError && error.status === 404 ? 'Nothing is known of this URL any more.' : `Could not load: ${messageOf(error)}`);
  }
}

/**
 * What ok answers say of the cover: the original's size and its dominant colour
 * (a swatch, and the stored cover's box painted with it while it loads).
 * @param {Unchecked<NonNullable<TaskDetail['cover']>['answer']> | null} fields
 */
function showAnswerFields(fields) {
  const width = num(fields?.width);
  const height = num(fields?.height);
  const color = str(fields?.color);
  const known = color !== null && /^#[0-9a-f]{6}$/.test(color) ? color : null;
  /** @type {(Node | string)[]} */
  const parts = [];
  if (known) {
    const swatch = make('span', 'swatch');
    swatch.style.background = known;
    parts.push(swatch, `${known} · `);
    const img = ui.detailCover.querySelector('img');
    if (img) img.style.background = known;
  }
  parts.push(width && height ? `${width}×${height} original${known ? '' : ' · colour not known yet'}` : '—');
  ui.detailAnswer.replaceChildren(...parts);
}

/**
 * The detail's progress: bytes downloaded (of the total while downloading), and
 * the stored file's size apart (resized, it is not what was downloaded).
 * @param {Task|null} task @param {number|null} stored
 */
function progressText(task, stored) {
  const kept = stored !== null ? `stored ${formatBytes(stored)}` : '';
  if (!task) return kept || '—';
  if (ACTIVE.has(task.status)) return task.bytes > 0 || task.total !== null ? `${formatBytes(task.bytes)} of ${task.total !== null ? formatBytes(task.total) : '?'} downloaded` : 'nothing downloaded yet';
  const got = task.bytes > 0 ? `${formatBytes(task.bytes)} downloaded` : '';
  return [got, kept].filter(Boolean).join(' · ') || '—';
}

/** @param {Unchecked<TaskDetail>} answer */
function showDetail(answer) {
  const raw = /** @type {Unchecked<TaskJson>|null} */ (record(answer.task));
  const task = raw ? normTask({ ...raw, at: raw.updatedAt }) : null;
  const cover = /** @type {Unchecked<NonNullable<TaskDetail['cover']>>|null} */ (record(answer.cover));
  detail.status = task?.status ?? null;
  detail.hasCover = cover !== null;
  ui.detailLoading.hidden = true;
  ui.detailFacts.hidden = false;
  ui.detailStatus.dataset.status = task?.status ?? 'unknown';
  setText(ui.detailStatus, task ? task.status : cover ? 'stored' : 'no task');
  setText(ui.detailAttempts, task?.attempts ?? '—');
  setText(ui.detailError, task?.error ? `${task.error.code}${task.error.message ? `: ${task.error.message}` : ''}` : '—');
  // The node holding the task now, else the node that made its last change.
  let node = task?.node ?? null;
  let nodeNote = '';
  if (!node && Array.isArray(answer.timeline)) {
    node = str(/** @type {Unchecked<TimelineEvent>|null} */ (record(answer.timeline.at(-1)))?.node);
    nodeNote = node ? ', its last change' : '';
  }
  setText(ui.detailNode, node ? `${node}${node === state.self ? ' (this node)' : ''}${nodeNote}` : '—');
  setText(ui.detailCreated, formatTime(raw?.createdAt));
  setText(ui.detailStarted, formatTime(raw?.startedAt));
  setText(ui.detailFinished, formatTime(raw?.finishedAt));
  setText(ui.detailBytes, progressText(task, num(cover?.bytes)));
  const href = safeHref(cover?.coverUrl);
  if (cover && href) {
    const a = make('a', '', `${str(cover.source) ?? 'stored'} cover, ${formatBytes(num(cover.bytes))}${num(cover.width) ? `, ${num(cover.width)}×${num(cover.height)}` : ''}`);
    a.href = href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    const img = make('img');
    img.src = href;
    img.alt = `Stored cover of ${detail.url ?? ''}`;
    ui.detailCover.replaceChildren(a, img);
  } else {
    ui.detailCover.replaceChildren('none stored');
  }
  showVariants(answer);
  showAnswerFields(/** @type {Unchecked<NonNullable<TaskDetail['cover']>['answer']>|null} */ (record(cover?.answer)));
  const items = [];
  for (const value of Array.isArray(answer.timeline) ? answer.timeline : []) {
    const event = normTask(value);
    if (!event) continue;
    // A stored timeline has no `removed` (task frames do): read in case one comes.
    const e = /** @type {Unchecked<TimelineEvent & Pick<TaskEvent, 'removed'>>|null} */ (record(value));
    const li = make('li');
    li.dataset.status = event.status;
    const time = make('time', '', formatTime(event.at));
    time.setAttribute('datetime', event.at);
    /** @type {string[]} */
    const parts = [event.status];
    if (e?.removed === true) parts.push('removed');
    if (event.status === 'downloading' && event.bytes > 0) parts.push(`${formatBytes(event.bytes)}${event.total !== null ? ` of ${formatBytes(event.total)}` : ''}`);
    const n = num(e?.try);
    if (n !== null && n > 0) parts.push(`try ${n}`);
    if (event.error) parts.push(`${event.error.code}${event.error.message ? `: ${event.error.message}` : ''}`);
    if (event.node) parts.push(`by ${event.node}`);
    li.append(time, parts.join(' · '));
    items.push(li);
  }
  ui.detailTimeline.replaceChildren(...items);
  ui.detailTimelineEmpty.hidden = items.length > 0;
  renderDetailButtons();
}

/**
 * The sizes and formats made of the cover on demand, largest first: each a link
 * to the file, `W×H format · bytes`.
 * @param {Unchecked<TaskDetail>} answer
 */
function showVariants(answer) {
  const list = make('ul', 'variants');
  for (const value of Array.isArray(answer.variants) ? answer.variants : []) {
    const v = /** @type {Unchecked<TaskDetail['variants'][number]>|null} */ (record(value));
    const href = safeHref(v?.coverUrl);
    const format = str(v?.format);
    if (!v || !href || !format) continue;
    const width = num(v.width);
    const height = num(v.height);
    const size = width !== null ? `${width}×${height ?? '?'}` : 'size unknown';
    const li = make('li');
    li.dataset.format = format;
    const a = make('a', 'mono', `${size} ${format}`);
    a.href = href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    li.append(a, make('span', 'bytes', ` · ${formatBytes(num(v.bytes))}`));
    list.append(li);
  }
  const shown = list.childElementCount;
  const total = num(answer.variantsTotal) ?? shown;
  if (shown === 0) {
    ui.detailVariants.replaceChildren(answer.cover ? 'none made yet' : '—');
    return;
  }
  /** @type {HTMLElement[]} */
  const nodes = [list];
  if (total > shown) nodes.push(make('p', 'hint', `${total - shown} more not shown`));
  ui.detailVariants.replaceChildren(...nodes);
}

function renderDetailButtons() {
  const known = detail.url !== null && !ui.detailFacts.hidden;
  ui.detailRetry.disabled = !conn.live || !known || detail.status === null || ACTIVE.has(detail.status);
  ui.detailCancel.disabled = !conn.live || !known || detail.status === null || !ACTIVE.has(detail.status);
  ui.detailRemove.disabled = !conn.live || !known || (!detail.hasCover && detail.status === null);
  setText(ui.detailRemove, detail.hasCover ? 'Remove stored cover' : 'Remove task');
}

/**
 * Runs a detail action, then shows the task again.
 * @param {(url: string) => Promise<string|null|void>} action
 */
function detailAction(action) {
  return () => {
    const url = detail.url;
    if (!url) return;
    void (async () => {
      try {
        const message = await action(url);
        setText(ui.detailResult, message ?? '');
        if (message === null) return;
        await new Promise((resolve) => window.setTimeout(resolve, 300));
        if (detail.url === url) await openDetail(url);
      } catch (error) {
        if (!(error instanceof AuthError)) setText(ui.detailResult, `Failed: ${messageOf(error)}`);
      }
    })();
  };
}
ui.detailRetry.addEventListener('click', detailAction(async (url) => void (await api('POST', `api/retry?url=${q(url)}`))));
ui.detailCancel.addEventListener('click', detailAction(async (url) => void (await api('POST', `api/cancel?url=${q(url)}`))));
ui.detailRemove.addEventListener('click', detailAction(async (url) => await removeCover(url) ?? null));
ui.detailClose.addEventListener('click', () => ui.detail.close());
ui.detail.addEventListener('close', () => {
  detail.url = null;
  detail.seq++;
});

// ---- start ---------------------------------------------------------------

render();
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) {
  ui.token.value = saved;
  start(saved);
} else {
  showLogin('');
}

export {};
