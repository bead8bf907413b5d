import { readFileSync } from 'node:fs';

/** The package version, read once from package.json. */
export const version: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The User-Agent of every fetch: names coverhelper and its version, nothing else. */
export const userAgent = `coverhelper/${version}`;
