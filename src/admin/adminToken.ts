/**
 * The admin secret: `--admin-token`, or one generated at first start into
 * `DATA_DIR/admin-token` (mode 0600) and read from there after. The log names
 * the file, never the token.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../logger.js';

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
  try {
    const saved = (await readFile(file, 'utf8')).trim();
    if (saved !== '') {
      logger.info(`${label} read from file`, { file });
      return saved;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const token = randomBytes(32).toString('base64url');
  // 'wx': never overwrite a secret another start wrote meanwhile.
  await writeFile(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  logger.info(`${label} generated; it is in this file (readable by its owner only)`, { file });
  return token;
}
