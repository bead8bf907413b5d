/**
 * What the command line prints besides running the service: `--help` (every
 * option by group, with its environment variable and default), `--version`, and
 * `--print-config` (the effective configuration after every source, secrets
 * masked, each value with where it came from). All of it is built from the
 * option table in config.ts, so it cannot drift from what is parsed.
 */
import path from 'node:path';
import { commandOptions, defaults, describeOrigin, envName, MASK, maskSecrets, optionGroups, options } from './config.js';
import type { Config, OptionSpec, ResolvedConfig } from './config.js';
import { formatHostLimit } from './upstream/hostLimits.js';
import { userAgent, version } from './version.js';

const optionList = Object.values(options) as OptionSpec[];

/** A value as the command line would take it: `320x200`, `off`, `a.com,*.b.com`, `none`. */
function formatValue(value: Config[keyof Config]): string {
  if (value === undefined) return 'none';
  if (value === null) return 'off';
  if (Array.isArray(value)) return value.length === 0 ? 'none' : value.map((item) => (typeof item === 'string' || typeof item === 'number' ? String(item) : formatHostLimit(item))).join(',');
  if (typeof value === 'object') return `${value.width}x${value.height}`;
  return String(value);
}

/** The default as `--help` and the README show it. */
export function defaultText(spec: OptionSpec): string {
  if (spec.defaultText !== undefined) return spec.defaultText;
  return formatValue((defaults as Partial<Config>)[spec.key]);
}

/** Words of `text` in lines of at most `width` characters, each starting with `indent`. */
function wrap(text: string, indent: string, width = 80): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(indent + line);
  return lines;
}

export function versionText(): string {
  return `coverhelper ${version}\n`;
}

export function helpText(): string {
  const out: string[] = [
    `coverhelper ${version}: a cover cache for blogs.`,
    '',
    'Usage: npm start -- [options]',
    '       node dist/src/main.js [options]    (after npm run build)',
    '',
    'Every option can also be set by its environment variable, or as a key of the',
    'JSON file named by --config. Precedence: flag > environment > --config file >',
    'default. A bad value stops the start with one line naming it (exit code 2).',
  ];
  for (const group of optionGroups) {
    out.push('', `${group}:`);
    for (const spec of optionList.filter((o) => o.group === group)) {
      out.push(`  --${spec.flag} ${spec.placeholder}`);
      out.push(...wrap(spec.help, '      '));
      out.push(`      env ${envName(spec.flag)}; default ${defaultText(spec)}`);
    }
  }
  out.push('', 'Command line:');
  for (const [flag, spec] of Object.entries(commandOptions)) {
    const short = 'short' in spec ? `-${spec.short}, ` : '';
    out.push(`  ${short}--${flag}${spec.placeholder ? ` ${spec.placeholder}` : ''}`);
    out.push(...wrap(spec.help, '      '));
    if ('env' in spec) out.push(`      env ${spec.env}; default none`);
  }
  out.push('', 'Exit codes: 0 after a stop by SIGTERM or SIGINT, 1 when the start fails, 2 for a bad option.');
  return `${out.join('\n')}\n`;
}

/** Secrets that are generated at first start when unset, and the file in the data folder that keeps them. */
const generatedInto: Partial<Record<keyof Config, string>> = { adminToken: 'admin-token', callbackSecret: 'callback-secret' };

/** The value as `--print-config` shows it. */
function shownValue(spec: OptionSpec, config: Config): string {
  const value = config[spec.key];
  if (spec.secret) {
    if (value !== undefined) return MASK;
    const file = generatedInto[spec.key];
    return file ? `none: read from ${path.join(config.dataDir, file)} (made at first start)` : 'none';
  }
  if (spec.key === 'publicUrl' && value === undefined) {
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    return `http://${host}:PORT/covers/ (PORT: the bound port)`;
  }
  if (spec.key === 'nodeId' && value === undefined) return 'the host name and the bound port';
  if (spec.key === 'legacyPort' && value === undefined) return 'off';
  if (spec.key === 'apiUserAgent' && value === undefined) return `${userAgent} (coverhelper's own)`;
  // The path of the cookie file, never what it holds (read at start only).
  if (spec.key === 'bilibiliCookie' && config.bilibiliCookie !== undefined) return `${config.bilibiliCookie} (read at start)`;
  const text = formatValue(value);
  return typeof value === 'string' ? maskSecrets(text) : text;
}

/**
 * The effective configuration, one option a line (`--flag  value  source`), by
 * group. Secrets show as the mask when set; a database URL's password too. Then
 * a note for each `COVERHELPER_…` variable that is set but names no option.
 */
export function printableConfig(resolved: ResolvedConfig): string {
  const rows: [string, string, string][] = [];
  for (const group of optionGroups) {
    for (const spec of optionList.filter((o) => o.group === group)) {
      rows.push([`--${spec.flag}`, shownValue(spec, resolved.config), describeOrigin(resolved.origins[spec.key])]);
    }
  }
  rows.push(['--config', resolved.configFile?.path ?? 'none', resolved.configFile ? describeOrigin(resolved.configFile.origin) : 'default']);
  const flagWidth = Math.max(...rows.map((r) => r[0].length));
  const valueWidth = Math.min(48, Math.max(...rows.map((r) => r[1].length)));
  const lines = rows.map(([flag, value, origin]) => `${flag.padEnd(flagWidth)}  ${value.padEnd(valueWidth)}  ${origin}`);
  for (const { variable, suggestion } of resolved.unknownEnv) {
    lines.push(`# ${variable} is set but is not an option: ignored${suggestion ? `; did you mean ${suggestion}?` : ''}`);
  }
  return `# coverhelper ${version}: effective configuration (secrets masked as ${MASK})\n${lines.join('\n')}\n`;
}
