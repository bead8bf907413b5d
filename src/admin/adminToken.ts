/**
 * The admin secret: `--admin-token`, or one generated at first start into
 * `DATA_DIR/admin-token` (mode 0600) and read from there after. The log names
 * the file, never the token.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Logger } from '../logger.js';
import { createFile, inspectFile, PathRefusedError } from '../store/index.js';

export const ADMIN_TOKEN_FILE = 'admin-token';

export async function resolveAdminToken(options: { adminToken: string | undefined; dataDir: string }, logger: Logger): Promise<string> {
  return resolveSecret(options.adminToken, options.dataDir, ADMIN_TOKEN_FILE, 'admin token', logger);
}

/**
 * A secret given as an option, or read from `DATA_DIR/<fileName>`, or generated
 * there at first start (mode 0600). The log names the file, never the secret.
 * Also the job callbacks' `--callback-secret`.
 */
export async function resolveSecret(given: string | undefined, dataDir: string, fileName: string, label: string, logger: Logger): Promise<string> {
  if (given !== undefined) return given;
  const file = path.join(dataDir, fileName);
  // Through the path guard: a link in the secret's place is refused, never read through nor written through.
  const opened = await inspectFile(dataDir, [fileName]);
  if ('refused' in opened) {
    if (opened.refused !== 'missing') {
      throw new PathRefusedError(`${file} is not a regular file in the data folder (${opened.refused}${opened.code ? `: ${opened.code}` : ''})`);
    }
  } else {
    let saved: string;
    try {
      saved = (await opened.handle.readFile('utf8')).trim();
    } finally {
      await opened.handle.close();
    }
    if (saved !== '') {
      logger.info(`${label} read from file`, { file });
      return saved;
    }
  }
  const token = randomBytes(32).toString('base64url');
  // Exclusive: never overwrite a secret another start wrote meanwhile.
  const handle = await createFile(dataDir, [fileName], 0o600);
  try {
    await handle.writeFile(`${token}\n`);
  } finally {
    await handle.close();
  }
  logger.info(`${label} generated; it is in this file (readable by its owner only)`, { file });
  return token;
}
