/**
 * The one typed configuration object (SPEC §3).
 *
 * Precedence: command-line flag > environment variable > `--config FILE` (JSON) >
 * default. Every value is validated once, here; a bad value throws a
 * `ConfigError` naming the option, which `main` prints on one line before exiting 2.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from './errors.js';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export interface ResizeSpec {
  width: number;
  height: number;
}

export interface Config {
  /** Bind address. Default `127.0.0.1`. */
  host: string;
  /** HTTP + WebSocket port; 0 picks any free port. Default 8080. */
  port: number;
  /** The SQLite database and the generated admin token live here (temp files go to the covers folder's `.tmp/`). Default `./data`. */
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
  /** Allow origins on addresses that are not public (loopback, private, link-local, …). Default false. */
  allowPrivateNetwork: boolean;
  /** Downloads running at once. Default 10. */
  workers: number;
  /** Seconds one download may take, wall clock, before it ends as `tle`. Default 60. */
  timeLimit: number;
  /** Largest image accepted, in bytes. Default 10 MiB. */
  maxBytes: number;
  /** Extra tries for transient failures. Default 2. */
  retries: number;
  /** Seconds a failed URL answers from its recorded failure before it is tried again. Default 300. */
  failTtl: number;
  /** `WxH` crops to fill at that size; `null` (flag value `off`) keeps the original bytes. Default 320x200. */
  resize: ResizeSpec | null;
  /** URLs accepted in one check request. Default 1000. */
  maxBatch: number;
  /** If set, `/ws` needs it as a Bearer header or `?token=`. Default none. */
  clientToken: string | undefined;
  /** Admin secret; generated into `DATA_DIR/admin-token` when unset. */
  adminToken: string | undefined;
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
  /** TCP port of the 2019 protocol; `undefined` (flag value `off`) = not served. Default off. */
  legacyPort: number | undefined;
  /** This node's name among several; `undefined` = the host name and the bound port. */
  nodeId: string | undefined;
  /** Seconds a node's claim on a download lasts unless renewed. Default 30. */
  lease: number;
  /** Default `info`. */
  logLevel: LogLevel;
  /** `pretty` on a TTY, else `json`, unless set. */
  logFormat: 'pretty' | 'json';
}

/** Raw values as they come from a flag, the environment or a JSON file. */
type Raw = string | number | boolean | null;

interface OptionSpec<K extends keyof Config> {
  key: K;
  /** The flag's name without `--`; the env variable is COVERHELPER_ + its upper snake case. */
  flag: string;
  /** Turns a raw value into the typed one, or throws a message. */
  parse: (raw: Raw) => Config[K];
  /** A flag that may stand alone (`--allow-private-network`). */
  boolean?: true;
}

const str = (raw: Raw): string => {
  if (typeof raw !== 'string' && typeof raw !== 'number') throw new Error('expected a string');
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

const bool = (raw: Raw): boolean => {
  if (typeof raw === 'boolean') return raw;
  const s = str(raw).toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(s)) return true;
  if (['false', '0', 'no', 'off'].includes(s)) return false;
  throw new Error(`expected true or false, got ${JSON.stringify(raw)}`);
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

const optionalPort = (raw: Raw): number | undefined => {
  if (typeof raw === 'string' && raw.trim().toLowerCase() === 'off') return undefined;
  return num(0, 65535, true)(raw);
};

const optionalString = (raw: Raw): string | undefined => str(raw);

const nodeId = (raw: Raw): string => {
  const s = str(raw);
  if (!/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/.test(s)) throw new Error(`expected up to 128 letters, digits and . _ : @ -, got ${JSON.stringify(s)}`);
  return s;
};

const options: { [K in keyof Config]: OptionSpec<K> } = {
  host: { key: 'host', flag: 'host', parse: str },
  port: { key: 'port', flag: 'port', parse: num(0, 65535, true) },
  dataDir: { key: 'dataDir', flag: 'data-dir', parse: str },
  db: { key: 'db', flag: 'db', parse: str },
  coversDir: { key: 'coversDir', flag: 'covers-dir', parse: str },
  publicUrl: { key: 'publicUrl', flag: 'public-url', parse: (raw) => withTrailingSlash(httpUrl(raw)) },
  allowHosts: { key: 'allowHosts', flag: 'allow-hosts', parse: hostList },
  bilibiliApi: { key: 'bilibiliApi', flag: 'bilibili-api', parse: (raw) => httpUrl(raw).replace(/\/+$/, '') },
  allowPrivateNetwork: { key: 'allowPrivateNetwork', flag: 'allow-private-network', parse: bool, boolean: true },
  workers: { key: 'workers', flag: 'workers', parse: num(1, 1000, true) },
  timeLimit: { key: 'timeLimit', flag: 'time-limit', parse: num(0.05, 86400, false) },
  maxBytes: { key: 'maxBytes', flag: 'max-bytes', parse: num(1, 2 ** 31, true) },
  retries: { key: 'retries', flag: 'retries', parse: num(0, 20, true) },
  failTtl: { key: 'failTtl', flag: 'fail-ttl', parse: num(0, 365 * 86400, false) },
  resize: { key: 'resize', flag: 'resize', parse: resize },
  maxBatch: { key: 'maxBatch', flag: 'max-batch', parse: num(1, 100000, true) },
  clientToken: { key: 'clientToken', flag: 'client-token', parse: optionalString },
  adminToken: { key: 'adminToken', flag: 'admin-token', parse: optionalString },
  diskLimit: { key: 'diskLimit', flag: 'disk-limit', parse: num(0, 100, false) },
  memLimit: { key: 'memLimit', flag: 'mem-limit', parse: num(0, 100, false) },
  loadLimit: { key: 'loadLimit', flag: 'load-limit', parse: num(0, 100000, false) },
  maxAgeHours: { key: 'maxAgeHours', flag: 'max-age-hours', parse: num(0, 1e7, false) },
  maxCacheBytes: { key: 'maxCacheBytes', flag: 'max-cache-bytes', parse: num(0, Number.MAX_SAFE_INTEGER, true) },
  legacyPort: { key: 'legacyPort', flag: 'legacy-port', parse: optionalPort },
  nodeId: { key: 'nodeId', flag: 'node-id', parse: nodeId },
  lease: { key: 'lease', flag: 'lease', parse: num(2, 3600, false) },
  logLevel: { key: 'logLevel', flag: 'log-level', parse: oneOf(['error', 'warn', 'info', 'debug'] as const) },
  logFormat: { key: 'logFormat', flag: 'log-format', parse: oneOf(['pretty', 'json'] as const) },
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
  allowPrivateNetwork: false,
  workers: 10,
  timeLimit: 60,
  maxBytes: 10 * 1024 * 1024,
  retries: 2,
  failTtl: 300,
  resize: { width: 320, height: 200 },
  maxBatch: 1000,
  clientToken: undefined,
  adminToken: undefined,
  diskLimit: 80,
  memLimit: 80,
  loadLimit: 5,
  maxAgeHours: 0,
  maxCacheBytes: 0,
  legacyPort: undefined,
  nodeId: undefined,
  lease: 30,
  logLevel: 'info',
} satisfies Omit<Config, 'db' | 'logFormat'>;

const flagToKey = new Map(Object.values(options).map((o) => [o.flag, o.key]));
const envName = (flag: string) => `COVERHELPER_${flag.toUpperCase().replaceAll('-', '_')}`;

export interface ConfigSources {
  argv: readonly string[];
  env: NodeJS.ProcessEnv;
  isTTY: boolean;
  /** Relative paths in the result are resolved against this folder. */
  cwd: string;
}

/** Splits `--flag value`, `--flag=value` and lone boolean flags. */
function parseArgv(argv: readonly string[]): { values: Map<keyof Config, Raw>; configFile: string | undefined } {
  const values = new Map<keyof Config, Raw>();
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new ConfigError(arg, 'unexpected argument (flags look like --name value)');
    const eq = arg.indexOf('=');
    const flag = arg.slice(2, eq === -1 ? undefined : eq);
    let value: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    if (flag === 'config') {
      value ??= argv[++i];
      if (value === undefined) throw new ConfigError('config', 'needs a file path');
      configFile = value;
      continue;
    }
    const key = flagToKey.get(flag);
    if (key === undefined) throw new ConfigError(flag, 'unknown option');
    const spec = options[key];
    if (value === undefined) {
      const next = argv[i + 1];
      if (spec.boolean && (next === undefined || next.startsWith('--'))) value = 'true';
      else if (next === undefined) throw new ConfigError(flag, 'needs a value');
      else value = argv[++i];
    }
    values.set(key, value ?? null);
  }
  return { values, configFile };
}

function readConfigFile(file: string, cwd: string): Map<keyof Config, Raw> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path.resolve(cwd, file), 'utf8'));
  } catch (error) {
    throw new ConfigError('config', `cannot read ${file}: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError('config', `${file} must hold a JSON object`);
  }
  const values = new Map<keyof Config, Raw>();
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    const key = name in options ? (name as keyof Config) : flagToKey.get(name);
    if (key === undefined) throw new ConfigError(name, `unknown option in ${file}`);
    const raw = Array.isArray(value) ? value.join(',') : value;
    if (raw !== null && !['string', 'number', 'boolean'].includes(typeof raw)) {
      throw new ConfigError(options[key].flag, `in ${file}: expected a string, number or boolean`);
    }
    values.set(key, raw as Raw);
  }
  return values;
}

/** Builds and validates the configuration. Throws `ConfigError` on the first bad value. */
export function loadConfig(sources: ConfigSources): Config {
  const { values: fromArgv, configFile } = parseArgv(sources.argv);
  const file = configFile ?? sources.env.COVERHELPER_CONFIG;
  const fromFile = file === undefined ? new Map<keyof Config, Raw>() : readConfigFile(file, sources.cwd);

  const pick = <K extends keyof Config>(key: K): Config[K] | undefined => {
    const spec: OptionSpec<K> = options[key];
    const env = sources.env[envName(spec.flag)];
    const raw = fromArgv.has(key) ? fromArgv.get(key) : env !== undefined ? env : fromFile.get(key);
    if (raw === undefined) return undefined;
    try {
      return spec.parse(raw ?? '');
    } catch (error) {
      throw new ConfigError(spec.flag, (error as Error).message);
    }
  };

  const config = {} as Record<keyof Config, unknown>;
  for (const key of Object.keys(options) as (keyof Config)[]) {
    const value = pick(key);
    config[key] = value !== undefined ? value : (defaults as Record<string, unknown>)[key];
  }
  const result = config as unknown as Config;
  result.dataDir = path.resolve(sources.cwd, result.dataDir);
  result.coversDir = path.resolve(sources.cwd, result.coversDir);
  result.db ??= path.join(result.dataDir, 'coverhelper.sqlite');
  result.logFormat ??= sources.isTTY ? 'pretty' : 'json';
  result.db = databaseLocation(result.db, sources.cwd);
  return result;
}

/** `--db` checked: a PostgreSQL URL as it is, a SQLite file as an absolute path. */
function databaseLocation(db: string, cwd: string): string {
  if (/^postgres(ql)?:\/\//i.test(db)) {
    let url: URL;
    try {
      url = new URL(db);
    } catch {
      throw new ConfigError('db', 'not a valid postgres:// URL');
    }
    if (url.hostname === '' && !url.searchParams.has('host')) throw new ConfigError('db', 'a postgres:// URL needs a host');
    if (url.pathname.length <= 1) throw new ConfigError('db', 'a postgres:// URL needs a database name (postgres://user@host:5432/NAME)');
    return db;
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(db) && !db.startsWith('sqlite:')) {
    throw new ConfigError('db', `unsupported database URL ${JSON.stringify(db)} (use postgres://… or a SQLite file path)`);
  }
  const file = db.replace(/^sqlite:(\/\/)?/, '');
  return file === ':memory:' ? file : path.resolve(cwd, file);
}
