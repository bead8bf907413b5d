/**
 * The one typed configuration object (README, Configuration) and the command line.
 *
 * Precedence: command-line flag > environment variable (`COVERHELPER_` + the flag
 * in upper snake case) > `--config FILE` (a JSON object) > default. Every value is
 * validated once, here, and `resolveConfig` remembers where each one came from. A
 * bad value throws an `OptionError` whose one-line message names the option as it
 * was given (`--workers`, `COVERHELPER_WORKERS` or the key in the file); `main`
 * prints it and exits 2. The command line is split by node's `util.parseArgs`
 * (tokens only: the option table below decides what is known and valid); an
 * unknown option is answered with the closest known one (`leven`).
 */
import os from 'node:os';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import ipaddr from 'ipaddr.js';
import { closestMatch } from 'leven';
import { ConfigError } from './errors.js';
import { DEFAULT_FORMATS, DEFAULT_WIDTHS, VARIANT_FORMATS, variantFormatOf } from './images/variants.js';
import type { ResizeSpec } from './images/processImage.js';
import type { VariantFormat } from './images/variants.js';
import { MASK, maskSecrets } from './secrets.js';
import { DEFAULT_HOST_LIMITS, parseHostLimits } from './upstream/hostLimits.js';
import type { HostLimit } from './upstream/hostLimits.js';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/** `--proxy`: whether the proxy prefix is served, and whether it may be open (`--allow-hosts *`). */
export type ProxyMode = 'on' | 'off' | 'open';

/** `--resize WxH`: the default variant's box (declared with the image code that uses it). */
export type { ResizeSpec };

export interface Config {
  /** Bind address. Default `127.0.0.1`. */
  host: string;
  /** HTTP + WebSocket port; 0 picks any free port. Default 8080. */
  port: number;
  /** The SQLite database and the generated secrets live here (temp files go to the covers folder's `.tmp/`). Default `./data`. */
  dataDir: string;
  /**
   * Database: a `postgres://…` URL (several nodes share it) or a SQLite file path
   * (`sqlite:PATH` also works), made absolute. Default `DATA_DIR/coverhelper.sqlite`.
   */
  db: string;
  /** Where cover files live. Default `./covers`. */
  coversDir: string;
  /** Base of the cover URLs handed to clients, ending in `/`. Default `http://HOST:PORT/covers/` (the bound port). */
  publicUrl: string | undefined;
  /** Image host patterns that are downloaded: `host`, `*.domain` (subdomains) or `*` (any). */
  allowHosts: string[];
  /** Base URL of bilibili's video-info API. Default `https://api.bilibili.com`. */
  bilibiliApi: string;
  /**
   * A file holding the Cookie line sent to the `--bilibili-api` host only (made
   * absolute; read and checked once at start: owner-only mode). The path, never
   * the cookie, is what the configuration holds. Default none.
   */
  bilibiliCookie: string | undefined;
  /** `User-Agent` of the view API requests; `undefined` = coverhelper's own. Default none. */
  apiUserAgent: string | undefined;
  /** Hours after which a video page asked again is re-resolved in the background (fractions allowed); 0 = never. Default 24. */
  resolveTtl: number;
  /** Allow origins on addresses that are not public (loopback, private, link-local, …). Default false. */
  allowPrivateNetwork: boolean;
  /** Downloads running at once. Default 10. */
  workers: number;
  /**
   * Per-host rate (token bucket) and concurrency of every outbound request, first
   * match wins; the default entries not named follow the given ones.
   * Default `api.bilibili.com=2/s:4:2,*=20/s:40:16`.
   */
  hostLimits: HostLimit[];
  /** Seconds one download may take, wall clock, before it ends as `tle`. Default 60. */
  timeLimit: number;
  /** Largest image accepted, in bytes. Default 10 MiB. */
  maxBytes: number;
  /** Extra tries for transient failures. Default 2. */
  retries: number;
  /** Seconds a failed URL answers from its recorded failure before it is tried again. Default 300. */
  failTtl: number;
  /**
   * Seconds that downloads found unfinished at start (or taken over from a dead
   * node) with nobody waiting wait for an asker (a reconnecting client, a resumed
   * job) before they are dropped. Default 30.
   */
  resumeGrace: number;
  /** `WxH` crops to fill at that size; `null` (flag value `off`) keeps the original bytes. Default 320x200. */
  resize: ResizeSpec | null;
  /**
   * Longest side, in pixels, of the original kept beside each cover (scaled down
   * once to fit, never enlarged). Default 1920.
   */
  originalMax: number;
  /**
   * Widths a variant's `w` is rounded up to (`/covers/<path>?w=`), ascending,
   * no duplicates. Default 160,240,320,480,640,960,1280,1920.
   */
  widths: number[];
  /** Formats a variant may be made in without `f`, by `Accept`, in order of preference. Default avif,webp. */
  formats: VariantFormat[];
  /** Variants rendered at once. Default the number of cores (`os.availableParallelism()`). */
  renderWorkers: number;
  /** URLs accepted in one check request. Default 1000. */
  maxBatch: number;
  /** If set, `/ws` needs it as a Bearer header or `?token=`. Default none. */
  clientToken: string | undefined;
  /** Admin secret; generated into `DATA_DIR/admin-token` when unset. */
  adminToken: string | undefined;
  /** Key of the signed cover URLs (`/c/…`, docs/PROTOCOL.md, The HTTP door), at least 16 characters; `undefined` = that door is off. Default none. */
  urlKey: string | undefined;
  /** % disk used on the covers filesystem above which the service is tardy. Default 80. */
  diskLimit: number;
  /** % memory used above which the service is tardy. Default 80. */
  memLimit: number;
  /** 5-minute load average above which the service is tardy. Default 5. */
  loadLimit: number;
  /** Downloaded covers not asked for in this many hours are removed; 0 keeps them. Default 0. */
  maxAgeHours: number;
  /** Cap on the bytes of stored downloaded covers; 0 = no cap. Default 0. */
  maxCacheBytes: number;
  /** Hours an archive job and its archive are kept (docs/JOBS.md). Default 12. */
  jobTtl: number;
  /** Host patterns (`host`, `*.domain`) that job callbacks may reach on private addresses. Default none (`[]`). */
  callbackHosts: string[];
  /** Key of the HMAC on job callbacks, at least 16 characters; generated into `DATA_DIR/callback-secret` when unset. */
  callbackSecret: string | undefined;
  /** TCP port of the 2019 protocol; `undefined` (flag value `off`) = not served. Default off. */
  legacyPort: number | undefined;
  /** This node's name among several; `undefined` = the host name and the bound port. */
  nodeId: string | undefined;
  /** Seconds a node's claim on a download lasts unless renewed. Default 30. */
  lease: number;
  /**
   * The proxy prefix (`/?url=`, `/proxy/`, docs/PROTOCOL.md, The proxy prefix): `on`, `off` (both paths 404),
   * or `open` (on, and allowed with `--allow-hosts *`, which `on` refuses). Default `on`.
   */
  proxy: ProxyMode;
  /** Seconds of `Cache-Control: public, max-age=…` on proxy answers. Default 2592000 (30 days). */
  proxyMaxAge: number;
  /** Downloads (and renders) one client address may start through the proxy per 10 minutes. Default 600. */
  proxyRate: number;
  /**
   * Reverse proxies whose `X-Forwarded-For` is believed: IPv4/IPv6 addresses and
   * CIDRs in normal form (`10.0.0.0/8`, `::1`; IPv4-mapped given as IPv4). Default none (`[]`).
   */
  trustProxy: string[];
  /**
   * The image a proxied cover that cannot be had is answered with: `built-in` (a
   * neutral 320×200 box), `none` (502 JSON instead), or an image file's absolute
   * path (checked by decoding at start). Default `built-in`.
   */
  placeholder: string;
  /** Default `info`. */
  logLevel: LogLevel;
  /** `pretty` on a TTY, else `json`, unless set. */
  logFormat: 'pretty' | 'json';
}

/** Raw values as they come from a flag, the environment or a JSON file. */
type Raw = string | number | boolean | null;

/** The heading an option is listed under in `--help`, `--print-config` and the README. */
export const optionGroups = ['Network', 'Storage', 'Downloads', 'Access', 'Proxy prefix', 'Limits and expiry', 'Archive jobs', 'Several nodes', 'Logging'] as const;
export type OptionGroup = (typeof optionGroups)[number];

export interface OptionSpec<K extends keyof Config = keyof Config> {
  key: K;
  /** The flag's name without `--`; the env variable is COVERHELPER_ + its upper snake case. */
  flag: string;
  /** Turns a raw value into the typed one, or throws a message. */
  parse: (raw: Raw) => Config[K];
  /** A flag that may stand alone (`--allow-private-network`). */
  boolean?: true;
  /** Masked by `--print-config`. */
  secret?: true;
  group: OptionGroup;
  /** What the value looks like in `--help` (`N`, `HOST`, …). */
  placeholder: string;
  /** One line for `--help`. */
  help: string;
  /** The default as `--help` shows it, where it is not simply `defaults[key]`. */
  defaultText?: string;
}

const str = (raw: Raw): string => {
  if (typeof raw !== 'string' && typeof raw !== 'number') throw new Error(`expected a string, got ${JSON.stringify(raw)}`);
  const s = String(raw).trim();
  if (s === '') throw new Error('must not be empty');
  return s;
};

const num =
  (min: number, max: number, integer: boolean) =>
  (raw: Raw): number => {
    const n = typeof raw === 'number' ? raw : Number(str(raw));
    if (!Number.isFinite(n)) throw new Error(`expected a number, got ${JSON.stringify(raw)}`);
    if (integer && !Number.isInteger(n)) throw new Error(`expected a whole number, got ${JSON.stringify(raw)}`);
    if (n < min || n > max) throw new Error(`must be between ${min} and ${max}, got ${n}`);
    return n;
  };

const booleanWords = { true: true, '1': true, yes: true, on: true, false: false, '0': false, no: false, off: false } as const;

/** Whether `word` is a boolean value as a flag, variable or config key is read (`true`, `off`, …). */
export const isBooleanWord = (word: string): boolean => Object.hasOwn(booleanWords, word.toLowerCase());

const bool = (raw: Raw): boolean => {
  if (typeof raw === 'boolean') return raw;
  const word = str(raw).toLowerCase();
  if (!isBooleanWord(word)) throw new Error(`expected true or false, got ${JSON.stringify(raw)}`);
  return booleanWords[word as keyof typeof booleanWords];
};

const httpUrl = (raw: Raw): string => {
  const s = str(raw);
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw new Error(`expected an http(s) URL, got ${JSON.stringify(s)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`expected an http(s) URL, got ${JSON.stringify(s)}`);
  return s;
};

const oneOf =
  <T extends string>(values: readonly T[]) =>
  (raw: Raw): T => {
    const s = str(raw).toLowerCase();
    if (!(values as readonly string[]).includes(s)) throw new Error(`expected one of ${values.join(', ')}, got ${JSON.stringify(raw)}`);
    return s as T;
  };

const hostPattern = /^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])$/;

const hostList = (raw: Raw): string[] => {
  const hosts = str(raw)
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h !== '');
  if (hosts.length === 0) throw new Error('expected a comma-separated list of hosts');
  for (const h of hosts) {
    if (!hostPattern.test(h)) throw new Error(`not a host pattern: ${JSON.stringify(h)} (use host, *.domain or *)`);
  }
  return hosts;
};

/** Like `hostList`, without `*`: a callback host list names the hosts it lets through. */
const callbackHostList = (raw: Raw): string[] => {
  const hosts = hostList(raw);
  if (hosts.includes('*')) throw new Error('"*" would let callbacks reach any private address; name the hosts (host or *.domain), or use --allow-private-network');
  return hosts;
};

const resize = (raw: Raw): ResizeSpec | null => {
  const s = str(raw).toLowerCase();
  if (s === 'off') return null;
  const m = /^(\d{1,5})x(\d{1,5})$/.exec(s);
  if (!m) throw new Error(`expected WxH (such as 320x200) or off, got ${JSON.stringify(raw)}`);
  const width = Number(m[1]);
  const height = Number(m[2]);
  if (width < 1 || height < 1 || width > 10000 || height > 10000) throw new Error(`width and height must be between 1 and 10000, got ${s}`);
  return { width, height };
};

const widthList = (raw: Raw): number[] => {
  const parts = str(raw)
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
  if (parts.length === 0) throw new Error('expected a comma-separated list of widths, such as 320,640,960');
  if (parts.length > 32) throw new Error(`at most 32 widths, got ${parts.length}`);
  const widths = parts.map((part) => {
    if (!/^\d{1,5}$/.test(part)) throw new Error(`not a width in pixels: ${JSON.stringify(part)}`);
    const width = Number(part);
    if (width < 1 || width > 10000) throw new Error(`widths must be between 1 and 10000, got ${width}`);
    return width;
  });
  if (new Set(widths).size !== widths.length) throw new Error('a width is given twice');
  return widths.sort((a, b) => a - b);
};

const formatList = (raw: Raw): VariantFormat[] => {
  const parts = str(raw)
    .split(',')
    .map((part) => part.trim().toLowerCase())
    .filter((part) => part !== '');
  if (parts.length === 0) throw new Error(`expected a comma-separated list of ${VARIANT_FORMATS.join(', ')}`);
  const formats = parts.map((part) => {
    const format = variantFormatOf(part);
    if (format === undefined) throw new Error(`not a format: ${JSON.stringify(part)} (use ${VARIANT_FORMATS.join(', ')})`);
    return format;
  });
  if (new Set(formats).size !== formats.length) throw new Error('a format is given twice');
  return formats;
};

const optionalPort = (raw: Raw): number | undefined => {
  if (typeof raw === 'string' && raw.trim().toLowerCase() === 'off') return undefined;
  return num(0, 65535, true)(raw);
};


/** A header value: printable, no control characters (a CR or LF would start another header). */
const headerValue = (raw: Raw): string => {
  const s = str(raw);
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(s)) throw new Error('must not contain control characters (CR, LF, tab, …)');
  if (s.length > 512) throw new Error(`must be at most 512 characters (it is ${s.length})`);
  return s;
};

/**
 * An HMAC key. Signed cover URLs are public (they sit in blog pages), so a short
 * key could be found offline by trying keys against one of them.
 */
const hmacKey = (raw: Raw): string => secretValue(raw);

/**
 * Words that mark a value copied from an example rather than made: a secret
 * holding one (after dropping case and punctuation) is refused.
 */
const placeholderWords = ['changeme', 'changethis', 'replaceme', 'replacethis', 'yoursecret', 'yourtoken', 'yourkey', 'yourpassword', 'placeholder', 'example', 'putyour', 'insertyour', 'secrethere', 'tokenhere', 'keyhere'];

/**
 * A token or key: the client and admin tokens and the two HMAC keys. Each is
 * guessed by anyone who can try it (the tokens against the service, the keys
 * offline against one signed URL), so it must be at least 16 characters, hold
 * no spaces, and not be a well-known placeholder (`change-me`, `your-token-here`,
 * `xxxxxxxxxxxxxxxx`, `1234567890123456`).
 */
function secretValue(raw: Raw): string {
  const s = str(raw);
  const make = 'make one with: openssl rand -hex 32';
  if (s.length < 16) throw new Error(`must be at least 16 characters (it is ${s.length}); ${make}`);
  if (/\s/.test(s)) throw new Error('must not contain spaces');
  const plain = s.toLowerCase().replace(/[^a-z0-9]/g, '');
  const word = placeholderWords.find((w) => plain.includes(w));
  const digitsInRow = '01234567890123456789';
  const few = new Set(plain).size <= 3;
  if (word !== undefined || few || digitsInRow.includes(plain) || '9876543210987654321'.includes(plain)) {
    throw new Error(`looks like a placeholder${word ? ` ("${word}")` : ''}, not a secret; ${make}`);
  }
  return s;
}

/** An optional token (`--client-token`, `--admin-token`): a secret when set. */
const optionalSecret = (raw: Raw): string | undefined => secretValue(raw);

/**
 * One `--trust-proxy` entry: an IPv4 or IPv6 address or CIDR (IPv6 may be in
 * brackets), in normal form: a CIDR as its network address (`10.1.2.3/8` is
 * `10.0.0.0/8`), an IPv4-mapped IPv6 address or range as IPv4. IPv4 shorthands
 * (`127.1`) are refused: a list of proxies should say what it means.
 */
export function trustEntry(entry: string): string {
  const text = entry.trim().replace(/^\[([^\]]*)\](\/\d+)?$/, '$1$2');
  const [address = '', bits, extra] = text.split('/');
  const bad = new Error(`not an address or CIDR: ${JSON.stringify(entry)}`);
  if (extra !== undefined || !ipaddr.isValid(address) || (!address.includes(':') && !ipaddr.IPv4.isValidFourPartDecimal(address))) throw bad;
  if (bits === undefined) return ipaddr.process(address).toString();
  let range: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    if (!/^\d{1,3}$/.test(bits)) throw bad;
    range = ipaddr.parseCIDR(text);
  } catch {
    throw bad;
  }
  const [base, length] = range;
  if (base instanceof ipaddr.IPv6 && base.isIPv4MappedAddress() && length >= 96) return trustEntry(`${base.toIPv4Address().toString()}/${length - 96}`);
  const network = base instanceof ipaddr.IPv4 ? ipaddr.IPv4.networkAddressFromCIDR(text) : ipaddr.IPv6.networkAddressFromCIDR(text);
  return `${network.toString()}/${length}`;
}

const trustList = (raw: Raw): string[] => {
  const s = str(raw).toLowerCase();
  if (s === 'none') return [];
  const entries = s
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (entries.length === 0) throw new Error('expected a comma-separated list of addresses or CIDRs, or none');
  return [...new Set(entries.map(trustEntry))];
};

/** `built-in`, `none`, or a file path (made absolute by `resolveConfig`; read and decoded at start). */
const placeholderSetting = (raw: Raw): string => {
  const s = str(raw);
  const word = s.toLowerCase();
  if (word === 'built-in' || word === 'builtin' || word === 'built in') return 'built-in';
  if (word === 'none') return 'none';
  return s;
};

const nodeId = (raw: Raw): string => {
  const s = str(raw);
  if (!/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/.test(s)) throw new Error(`expected up to 128 letters, digits and . _ : @ -, got ${JSON.stringify(s)}`);
  return s;
};

/** Every option, in the order `--help` lists them within their group. */
export const options: { [K in keyof Config]: OptionSpec<K> } = {
  host: { key: 'host', flag: 'host', parse: str, group: 'Network', placeholder: 'ADDRESS', help: 'bind address' },
  port: { key: 'port', flag: 'port', parse: num(0, 65535, true), group: 'Network', placeholder: 'N', help: 'HTTP + WebSocket port; 0 = any free port' },
  publicUrl: {
    key: 'publicUrl',
    flag: 'public-url',
    parse: (raw) => withTrailingSlash(httpUrl(raw)),
    group: 'Network',
    placeholder: 'URL',
    help: 'base of the cover URLs handed to clients',
    defaultText: 'http://HOST:PORT/covers/',
  },
  legacyPort: {
    key: 'legacyPort',
    flag: 'legacy-port',
    parse: optionalPort,
    group: 'Network',
    placeholder: 'N|off',
    help: 'TCP port of the 2019 protocol (its old default was 25005)',
    defaultText: 'off',
  },
  dataDir: { key: 'dataDir', flag: 'data-dir', parse: str, group: 'Storage', placeholder: 'DIR', help: 'the SQLite database and the generated secrets' },
  db: {
    key: 'db',
    flag: 'db',
    parse: str,
    group: 'Storage',
    placeholder: 'FILE|URL',
    help: 'a SQLite file (sqlite:PATH also works) or a postgres:// URL shared by several nodes',
    defaultText: 'DATA_DIR/coverhelper.sqlite',
  },
  coversDir: { key: 'coversDir', flag: 'covers-dir', parse: str, group: 'Storage', placeholder: 'DIR', help: 'cover files; temp files go to its .tmp/' },
  allowHosts: {
    key: 'allowHosts',
    flag: 'allow-hosts',
    parse: hostList,
    group: 'Downloads',
    placeholder: 'HOSTS',
    help: 'image hosts that are downloaded, comma-separated: host, *.domain (its subdomains), * (any)',
  },
  bilibiliApi: {
    key: 'bilibiliApi',
    flag: 'bilibili-api',
    parse: (raw) => httpUrl(raw).replace(/\/+$/, ''),
    group: 'Downloads',
    placeholder: 'URL',
    help: "base URL of bilibili's video-info API",
  },
  bilibiliCookie: {
    key: 'bilibiliCookie',
    flag: 'bilibili-cookie',
    parse: str,
    group: 'Downloads',
    placeholder: 'FILE',
    help: 'a file (mode 0600) holding the Cookie line (SESSDATA=…; buvid3=…) sent to the --bilibili-api host only; read once at start',
    defaultText: 'none',
  },
  apiUserAgent: {
    key: 'apiUserAgent',
    flag: 'api-user-agent',
    parse: headerValue,
    group: 'Downloads',
    placeholder: 'TEXT',
    help: 'User-Agent of the view API requests',
    defaultText: "coverhelper's own (coverhelper/VERSION)",
  },
  resolveTtl: {
    key: 'resolveTtl',
    flag: 'resolve-ttl',
    parse: num(0, 24 * 365 * 10, false),
    group: 'Downloads',
    placeholder: 'HOURS',
    help: 'a video page asked again this many hours after it was last resolved is answered from the store and re-resolved in the background (fractions allowed); 0 = never',
  },
  allowPrivateNetwork: {
    key: 'allowPrivateNetwork',
    flag: 'allow-private-network',
    parse: bool,
    boolean: true,
    group: 'Downloads',
    placeholder: '[true|false]',
    help: 'allow origins on addresses that are not public (loopback, private, link-local, …)',
  },
  workers: { key: 'workers', flag: 'workers', parse: num(1, 1000, true), group: 'Downloads', placeholder: 'N', help: 'downloads running at once' },
  hostLimits: {
    key: 'hostLimits',
    flag: 'host-limits',
    parse: (raw) => parseHostLimits(str(raw)),
    group: 'Downloads',
    placeholder: 'LIMITS',
    help: 'per-host limits of every request to an upstream, pattern=RATE/s:BURST:CONCURRENCY, comma-separated, first match wins (pattern: host, *.domain or *); a default entry not named stays, before the first given entry that covers it',
  },
  timeLimit: {
    key: 'timeLimit',
    flag: 'time-limit',
    parse: num(0.05, 86400, false),
    group: 'Downloads',
    placeholder: 'SECONDS',
    help: 'seconds one download may take (retries included) before it ends as tle',
  },
  maxBytes: { key: 'maxBytes', flag: 'max-bytes', parse: num(1, 2 ** 31, true), group: 'Downloads', placeholder: 'BYTES', help: 'largest image accepted' },
  retries: {
    key: 'retries',
    flag: 'retries',
    parse: num(0, 20, true),
    group: 'Downloads',
    placeholder: 'N',
    help: 'extra tries for transient failures, with exponential backoff and jitter',
  },
  failTtl: {
    key: 'failTtl',
    flag: 'fail-ttl',
    parse: num(0, 365 * 86400, false),
    group: 'Downloads',
    placeholder: 'SECONDS',
    help: 'seconds a failed URL is answered from its recorded failure before it is tried again',
  },
  resumeGrace: {
    key: 'resumeGrace',
    flag: 'resume-grace',
    parse: num(0, 86400, false),
    group: 'Downloads',
    placeholder: 'SECONDS',
    help: 'seconds downloads resumed at start (or taken over) wait for someone to ask for them again before they are dropped',
  },
  resize: {
    key: 'resize',
    flag: 'resize',
    parse: resize,
    group: 'Downloads',
    placeholder: 'WxH|off',
    help: 'WxH (cropped to fill, aspect kept, never enlarged) or off (original bytes)',
  },
  originalMax: {
    key: 'originalMax',
    flag: 'original-max',
    parse: num(16, 10000, true),
    group: 'Downloads',
    placeholder: 'PIXELS',
    help: 'longest side of the original kept beside each cover (scaled down once past it, never enlarged)',
  },
  widths: {
    key: 'widths',
    flag: 'widths',
    parse: widthList,
    group: 'Downloads',
    placeholder: 'W,W,…',
    help: 'widths a variant\'s w (/covers/<path>?w=) is rounded up to, never past the original',
    defaultText: DEFAULT_WIDTHS.join(','),
  },
  formats: {
    key: 'formats',
    flag: 'formats',
    parse: formatList,
    group: 'Downloads',
    placeholder: 'FORMATS',
    help: 'formats a variant is made in by Accept when no f is given, in order (then the original\'s own): avif, webp, png, jpeg',
    defaultText: DEFAULT_FORMATS.join(','),
  },
  renderWorkers: {
    key: 'renderWorkers',
    flag: 'render-workers',
    parse: num(1, 256, true),
    group: 'Downloads',
    placeholder: 'N',
    help: 'variants rendered at once',
    defaultText: 'the number of cores',
  },
  maxBatch: { key: 'maxBatch', flag: 'max-batch', parse: num(1, 100000, true), group: 'Downloads', placeholder: 'N', help: 'URLs in one check request' },
  clientToken: {
    key: 'clientToken',
    flag: 'client-token',
    parse: optionalSecret,
    secret: true,
    group: 'Access',
    placeholder: 'TOKEN',
    help: 'if set (at least 16 characters), /ws needs it (Authorization: Bearer … or ?token=)',
    defaultText: 'none',
  },
  adminToken: {
    key: 'adminToken',
    flag: 'admin-token',
    parse: optionalSecret,
    secret: true,
    group: 'Access',
    placeholder: 'TOKEN',
    help: 'admin secret, at least 16 characters; if unset one is generated at first start into DATA_DIR/admin-token',
    defaultText: 'generated',
  },
  urlKey: {
    key: 'urlKey',
    flag: 'url-key',
    parse: hmacKey,
    secret: true,
    group: 'Access',
    placeholder: 'KEY',
    help: 'key of the signed cover URLs /c/…, at least 16 characters; unset = /c/ is off',
    defaultText: 'none',
  },
  proxy: {
    key: 'proxy',
    flag: 'proxy',
    parse: oneOf(['on', 'off', 'open'] as const),
    group: 'Proxy prefix',
    placeholder: 'on|off|open',
    help: 'serve /?url=<cover URL> and /proxy/<cover URL> for blogs that take an image-proxy prefix; off = 404; open = on, even with --allow-hosts *',
  },
  proxyMaxAge: {
    key: 'proxyMaxAge',
    flag: 'proxy-max-age',
    parse: num(0, 10 * 365 * 86400, true),
    group: 'Proxy prefix',
    placeholder: 'SECONDS',
    help: 'seconds of Cache-Control: public, max-age on proxy answers',
  },
  proxyRate: {
    key: 'proxyRate',
    flag: 'proxy-rate',
    parse: num(1, 1_000_000, true),
    group: 'Proxy prefix',
    placeholder: 'N',
    help: 'downloads and renders one client address may start per 10 minutes (the proxy, /covers sizes, bilibili suffixes); past it 429',
  },
  trustProxy: {
    key: 'trustProxy',
    flag: 'trust-proxy',
    parse: trustList,
    group: 'Proxy prefix',
    placeholder: 'ADDRESSES',
    help: 'addresses or CIDRs of reverse proxies whose X-Forwarded-For names the client, comma-separated',
  },
  placeholder: {
    key: 'placeholder',
    flag: 'placeholder',
    parse: placeholderSetting,
    group: 'Proxy prefix',
    placeholder: 'built-in|FILE|none',
    help: 'image answered when a proxied cover cannot be had: a 320x200 grey box, an image FILE (at most --max-bytes), or none (502 JSON)',
  },
  diskLimit: {
    key: 'diskLimit',
    flag: 'disk-limit',
    parse: num(0, 100, false),
    group: 'Limits and expiry',
    placeholder: 'PERCENT',
    help: '% disk used on the covers filesystem above which the service is tardy',
  },
  memLimit: { key: 'memLimit', flag: 'mem-limit', parse: num(0, 100, false), group: 'Limits and expiry', placeholder: 'PERCENT', help: '% memory used above which the service is tardy' },
  loadLimit: {
    key: 'loadLimit',
    flag: 'load-limit',
    parse: num(0, 100000, false),
    group: 'Limits and expiry',
    placeholder: 'LOAD',
    help: '5-minute load average above which the service is tardy',
  },
  maxAgeHours: {
    key: 'maxAgeHours',
    flag: 'max-age-hours',
    parse: num(0, 1e7, false),
    group: 'Limits and expiry',
    placeholder: 'HOURS',
    help: 'downloaded covers not asked for in this long are removed; 0 = keep',
  },
  maxCacheBytes: {
    key: 'maxCacheBytes',
    flag: 'max-cache-bytes',
    parse: num(0, Number.MAX_SAFE_INTEGER, true),
    group: 'Limits and expiry',
    placeholder: 'BYTES',
    help: 'cap on stored downloaded covers, least recently asked-for go first; 0 = no cap',
  },
  jobTtl: {
    key: 'jobTtl',
    flag: 'job-ttl',
    parse: num(0.0001, 24 * 365 * 10, false),
    group: 'Archive jobs',
    placeholder: 'HOURS',
    help: 'hours an archive job and its archive are kept',
  },
  callbackHosts: {
    key: 'callbackHosts',
    flag: 'callback-hosts',
    parse: callbackHostList,
    group: 'Archive jobs',
    placeholder: 'HOSTS',
    help: 'hosts (host, *.domain) that job callbacks may reach on private addresses',
    defaultText: 'none',
  },
  callbackSecret: {
    key: 'callbackSecret',
    flag: 'callback-secret',
    parse: hmacKey,
    secret: true,
    group: 'Archive jobs',
    placeholder: 'KEY',
    help: 'key of the HMAC on job callbacks, at least 16 characters; if unset one is generated into DATA_DIR/callback-secret',
    defaultText: 'generated',
  },
  nodeId: {
    key: 'nodeId',
    flag: 'node-id',
    parse: nodeId,
    group: 'Several nodes',
    placeholder: 'NAME',
    help: "this node's name among several",
    defaultText: 'host name and port',
  },
  lease: {
    key: 'lease',
    flag: 'lease',
    parse: num(2, 3600, false),
    group: 'Several nodes',
    placeholder: 'SECONDS',
    help: "seconds a node's claim on a download lasts unless renewed",
  },
  logLevel: {
    key: 'logLevel',
    flag: 'log-level',
    parse: oneOf(['error', 'warn', 'info', 'debug'] as const),
    group: 'Logging',
    placeholder: 'LEVEL',
    help: 'error, warn, info or debug',
  },
  logFormat: {
    key: 'logFormat',
    flag: 'log-format',
    parse: oneOf(['pretty', 'json'] as const),
    group: 'Logging',
    placeholder: 'FORMAT',
    help: 'pretty or json',
    defaultText: 'pretty on a TTY, else json',
  },
};

function withTrailingSlash(s: string): string {
  return s.endsWith('/') ? s : `${s}/`;
}

/** Defaults that do not depend on other values. `db` and `logFormat` are derived. */
export const defaults = {
  host: '127.0.0.1',
  port: 8080,
  dataDir: './data',
  coversDir: './covers',
  publicUrl: undefined,
  allowHosts: ['*.hdslb.com', '*.biliimg.com'],
  bilibiliApi: 'https://api.bilibili.com',
  bilibiliCookie: undefined,
  apiUserAgent: undefined,
  resolveTtl: 24,
  allowPrivateNetwork: false,
  workers: 10,
  hostLimits: DEFAULT_HOST_LIMITS.map((limit) => ({ ...limit })),
  timeLimit: 60,
  maxBytes: 10 * 1024 * 1024,
  retries: 2,
  failTtl: 300,
  resumeGrace: 30,
  resize: { width: 320, height: 200 },
  originalMax: 1920,
  widths: [...DEFAULT_WIDTHS],
  formats: [...DEFAULT_FORMATS],
  renderWorkers: Math.max(1, os.availableParallelism()),
  maxBatch: 1000,
  clientToken: undefined,
  adminToken: undefined,
  urlKey: undefined,
  diskLimit: 80,
  memLimit: 80,
  loadLimit: 5,
  maxAgeHours: 0,
  maxCacheBytes: 0,
  jobTtl: 12,
  callbackHosts: [],
  callbackSecret: undefined,
  legacyPort: undefined,
  nodeId: undefined,
  lease: 30,
  proxy: 'on',
  proxyMaxAge: 2592000,
  proxyRate: 600,
  trustProxy: [],
  placeholder: 'built-in',
  logLevel: 'info',
} satisfies Omit<Config, 'db' | 'logFormat'>;

/** Options of the command line only: they pick what the process does, not how the service runs. */
export const commandOptions = {
  config: { placeholder: 'FILE', help: 'a JSON file of the options above (keys: flag names or field names)', env: 'COVERHELPER_CONFIG' },
  'print-config': { placeholder: '', help: 'print the effective configuration (secrets masked) and where each value came from, then exit' },
  help: { placeholder: '', help: 'print this help and exit', short: 'h' },
  version: { placeholder: '', help: 'print the version and exit', short: 'v' },
} as const satisfies Record<string, { placeholder: string; help: string; env?: string; short?: string }>;

const optionList = Object.values(options) as OptionSpec[];
const flagToKey = new Map(optionList.map((o) => [o.flag, o.key]));

/** `COVERHELPER_` + the flag in upper snake case. */
export const envName = (flag: string) => `COVERHELPER_${flag.toUpperCase().replaceAll('-', '_')}`;

/** Where a value came from. */
export type Origin =
  | { from: 'default' }
  | { from: 'flag'; flag: string }
  | { from: 'env'; variable: string }
  | { from: 'file'; file: string; key: string };

/** `default`, `flag --workers`, `environment COVERHELPER_WORKERS`, `file /etc/c.json ("workers")`. */
export function describeOrigin(origin: Origin): string {
  switch (origin.from) {
    case 'default':
      return 'default';
    case 'flag':
      return `flag ${origin.flag}`;
    case 'env':
      return `environment ${origin.variable}`;
    case 'file':
      return `file ${origin.file} (${JSON.stringify(origin.key)})`;
  }
}

/**
 * A bad configuration value or command line. Its message is the whole line, naming
 * the option as it was given: `invalid --workers (flag): …`,
 * `invalid COVERHELPER_WORKERS (environment): …`, `invalid "workers" in /x.json: …`.
 */
export class OptionError extends ConfigError {
  constructor(
    /** The option's flag name without `--` (or the unknown name as given). */
    option: string,
    line: string,
  ) {
    super(option, line);
    this.message = line;
  }
}

/** The `OptionError` for a bad value of `option` from `origin`: `invalid --flag (flag): message` and the like. */
export function invalidOption(option: string, origin: Origin, message: string): OptionError {
  return invalid(option, origin, message);
}

function invalid(option: string, origin: Origin, message: string): OptionError {
  switch (origin.from) {
    case 'flag':
      return new OptionError(option, `invalid ${origin.flag} (flag): ${message}`);
    case 'env':
      return new OptionError(option, `invalid ${origin.variable} (environment): ${message}`);
    case 'file':
      return new OptionError(option, `invalid ${JSON.stringify(origin.key)} in ${origin.file}: ${message}`);
    case 'default':
      return new OptionError(option, `invalid --${option} (default): ${message}`);
  }
}

/** The closest of `candidates` to a misspelt `name`: the one name it begins, else a near spelling. */
function suggestion(name: string, candidates: readonly string[]): string | undefined {
  const extending = candidates.filter((c) => name.length >= 3 && c.startsWith(name));
  if (extending.length === 1) return extending[0];
  return closestMatch(name, candidates, { maxDistance: name.length <= 3 ? 1 : Math.max(2, Math.floor(name.length / 3)) });
}

const allFlags = [...optionList.map((o) => o.flag), ...Object.keys(commandOptions)];

function unknownOption(raw: string, name: string): OptionError {
  const near = suggestion(name, allFlags);
  return new OptionError(name, near ? `unknown option ${raw}; did you mean --${near}?` : `unknown option ${raw} (see --help)`);
}

/** What the process is asked to do. */
export type Action = 'run' | 'help' | 'version' | 'print-config';

interface CommandLine {
  action: Action;
  values: Map<keyof Config, Raw>;
  /** `--config FILE`, as given. */
  configFile: string | undefined;
}

/** node:util parseArgs's description of the command line (every option's flag, and the command options). */
export const parseArgsOptions = {
  ...Object.fromEntries(optionList.map((o) => [o.flag, { type: o.boolean ? ('boolean' as const) : ('string' as const) }])),
  config: { type: 'string' as const },
  'print-config': { type: 'boolean' as const },
  help: { type: 'boolean' as const, short: commandOptions.help.short },
  version: { type: 'boolean' as const, short: commandOptions.version.short },
};

/** A value given apart from its flag that is another flag, not a value (`--host --port 1`). */
const looksLikeFlag = (value: string) => value.startsWith('-') && value !== '-' && !/^-\d/.test(value);

/**
 * Reads the command line: `--flag value`, `--flag=value`, lone boolean flags
 * (`--allow-private-network`, or followed by its value), `-h` and `-v`.
 * `--help` and `--version` win over anything else on the line, even a bad value.
 */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  const { tokens } = parseArgs({ args: [...argv], options: parseArgsOptions, strict: false, allowPositionals: true, tokens: true });
  const names = new Set(tokens.flatMap((t) => (t.kind === 'option' ? [t.name] : [])));
  if (names.has('help')) return { action: 'help', values: new Map(), configFile: undefined };
  if (names.has('version')) return { action: 'version', values: new Map(), configFile: undefined };

  const values = new Map<keyof Config, Raw>();
  let configFile: string | undefined;
  let action: Action = 'run';
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.kind === 'option-terminator') continue;
    if (token.kind === 'positional') {
      throw new OptionError(token.value, `unexpected argument ${JSON.stringify(token.value)} (flags look like --name value)`);
    }
    const { name, rawName } = token;
    if (!rawName.startsWith('--')) throw unknownOption(rawName, name);
    const origin: Origin = { from: 'flag', flag: rawName };
    if (name === 'print-config') {
      if (token.value !== undefined) throw invalid(name, origin, 'takes no value');
      action = 'print-config';
      continue;
    }
    const key = name === 'config' ? undefined : flagToKey.get(name);
    if (name !== 'config' && key === undefined) throw unknownOption(rawName, name);
    let value = token.value;
    if (key !== undefined && options[key].boolean && value === undefined) {
      // `--allow-private-network` alone is true; `--allow-private-network false` is false
      // (a word after it that is not a boolean is refused as its value).
      const next = tokens[i + 1];
      if (next?.kind === 'positional') {
        value = next.value;
        i++;
      } else {
        value = 'true';
      }
    }
    if (value === undefined || (!token.inlineValue && looksLikeFlag(value))) {
      throw invalid(name, origin, `needs a value${value === undefined ? '' : ` (for a value starting with "-" write ${rawName}=VALUE)`}`);
    }
    if (key === undefined) configFile = value;
    else values.set(key, value);
  }
  return { action, values, configFile };
}

interface FileValue {
  raw: Raw;
  key: string;
}

function readConfigFile(file: string, origin: Origin): Map<keyof Config, FileValue> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw invalid('config', origin, `cannot read ${file}${code ? ` (${code})` : ''}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw invalid('config', origin, `${file} is not JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw invalid('config', origin, `${file} must hold a JSON object`);
  }
  const values = new Map<keyof Config, FileValue>();
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    const key = Object.hasOwn(options, name) ? (name as keyof Config) : flagToKey.get(name);
    if (key === undefined) {
      const near = suggestion(name, [...optionList.map((o) => o.flag), ...optionList.map((o) => o.key)]);
      throw new OptionError(name, `unknown option ${JSON.stringify(name)} in ${file}${near ? `; did you mean ${JSON.stringify(near)}?` : ''}`);
    }
    const raw = Array.isArray(value) ? value.join(',') : value;
    if (raw !== null && !['string', 'number', 'boolean'].includes(typeof raw)) {
      throw invalid(options[key].flag, { from: 'file', file, key: name }, 'expected a string, number, boolean or list');
    }
    values.set(key, { raw: raw as Raw, key: name });
  }
  return values;
}

export interface ConfigSources {
  argv: readonly string[];
  env: NodeJS.ProcessEnv;
  isTTY: boolean;
  /** Relative paths in the result are resolved against this folder. */
  cwd: string;
}

export interface ResolvedConfig {
  config: Config;
  /** Where each value came from. */
  origins: Record<keyof Config, Origin>;
  /** The config file read (absolute), and whether `--config` or COVERHELPER_CONFIG named it. */
  configFile: { path: string; origin: Origin } | undefined;
  action: Action;
  /** `COVERHELPER_…` environment variables that name no option (ignored), each with the closest one that does. */
  unknownEnv: UnknownVariable[];
}

/** A `COVERHELPER_…` variable that names no option, and the closest one that does. */
export interface UnknownVariable {
  variable: string;
  suggestion: string | undefined;
}

/**
 * Variables of the test suite and the benchmarks, not options: the crash points
 * (`COVERHELPER_CRASH_AT`), `COVERHELPER_TEST_…` knobs and databases, and
 * `COVERHELPER_BENCH_…`. Never reported as unknown.
 */
const internalVariable = /^COVERHELPER_(CRASH_AT$|TEST_|BENCH_)/;

/** `COVERHELPER_…` variables in `env` that are not options, such as a misspelt `COVERHELPER_WORKRES`. */
function unknownEnvironment(env: NodeJS.ProcessEnv): ResolvedConfig['unknownEnv'] {
  const prefix = 'COVERHELPER_';
  const known = [...optionList.map((o) => envName(o.flag)), commandOptions.config.env];
  const knownNames = known.map((name) => name.slice(prefix.length));
  return Object.keys(env)
    .filter((name) => name.startsWith(prefix) && !known.includes(name) && !internalVariable.test(name))
    .sort()
    .map((variable) => {
      const near = suggestion(variable.slice(prefix.length), knownNames);
      return { variable, suggestion: near === undefined ? undefined : prefix + near };
    });
}

/** Builds and validates the configuration, remembering where each value came from. Throws `OptionError` on the first bad value. */
export function resolveConfig(sources: ConfigSources): ResolvedConfig {
  const commandLine = parseCommandLine(sources.argv);
  const envFile = sources.env.COVERHELPER_CONFIG;
  const configFile =
    commandLine.configFile !== undefined
      ? { path: path.resolve(sources.cwd, commandLine.configFile), origin: { from: 'flag', flag: '--config' } as Origin }
      : envFile !== undefined
        ? { path: path.resolve(sources.cwd, envFile), origin: { from: 'env', variable: 'COVERHELPER_CONFIG' } as Origin }
        : undefined;
  const fromFile = configFile ? readConfigFile(configFile.path, configFile.origin) : new Map<keyof Config, FileValue>();

  const config = {} as Record<keyof Config, unknown>;
  const origins = {} as Record<keyof Config, Origin>;
  for (const spec of optionList) {
    const variable = envName(spec.flag);
    const env = sources.env[variable];
    const file = fromFile.get(spec.key);
    const [raw, origin]: [Raw | undefined, Origin] = commandLine.values.has(spec.key)
      ? [commandLine.values.get(spec.key), { from: 'flag', flag: `--${spec.flag}` }]
      : env !== undefined
        ? [env, { from: 'env', variable }]
        : file !== undefined
          ? [file.raw, { from: 'file', file: configFile!.path, key: file.key }]
          : [undefined, { from: 'default' }];
    origins[spec.key] = origin;
    if (raw === undefined) {
      config[spec.key] = (defaults as Record<string, unknown>)[spec.key];
      continue;
    }
    try {
      config[spec.key] = spec.parse(raw);
    } catch (error) {
      throw invalid(spec.flag, origin, (error as Error).message);
    }
  }
  const result = config as unknown as Config;
  result.dataDir = path.resolve(sources.cwd, result.dataDir);
  result.coversDir = path.resolve(sources.cwd, result.coversDir);
  result.db ??= path.join(result.dataDir, 'coverhelper.sqlite');
  result.logFormat ??= sources.isTTY ? 'pretty' : 'json';
  if (result.placeholder !== 'built-in' && result.placeholder !== 'none') result.placeholder = path.resolve(sources.cwd, result.placeholder);
  if (result.bilibiliCookie !== undefined) result.bilibiliCookie = path.resolve(sources.cwd, result.bilibiliCookie);
  if (result.proxy === 'on' && result.allowHosts.includes('*')) {
    throw new OptionError('proxy', '--allow-hosts * with --proxy on is an open image proxy; set --proxy open to mean it, or --proxy off');
  }
  try {
    result.db = databaseLocation(result.db, sources.cwd);
  } catch (error) {
    throw invalid('db', origins.db, (error as Error).message);
  }
  return { config: result, origins, configFile, action: commandLine.action, unknownEnv: unknownEnvironment(sources.env) };
}

/** Builds and validates the configuration. Throws `OptionError` (a `ConfigError`) on the first bad value. */
export function loadConfig(sources: ConfigSources): Config {
  return resolveConfig(sources).config;
}

/** `--db` checked: a PostgreSQL URL as it is, a SQLite file as an absolute path. */
function databaseLocation(db: string, cwd: string): string {
  if (/^postgres(ql)?:\/\//i.test(db)) {
    let url: URL;
    try {
      url = new URL(db);
    } catch {
      throw new Error('not a valid postgres:// URL');
    }
    if (url.hostname === '' && !url.searchParams.has('host')) throw new Error('a postgres:// URL needs a host');
    if (url.pathname.length <= 1) throw new Error('a postgres:// URL needs a database name (postgres://user@host:5432/NAME)');
    return db;
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(db) && !db.startsWith('sqlite:')) {
    throw new Error(`unsupported database URL ${JSON.stringify(maskSecrets(db))} (use postgres://… or a SQLite file path)`);
  }
  const file = db.replace(/^sqlite:(\/\/)?/, '');
  return file === ':memory:' ? file : path.resolve(cwd, file);
}

/** The mask and the one masking function live in secrets.ts; re-exported for the option table's users. */
export { MASK, maskSecrets };
