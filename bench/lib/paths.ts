import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The bench folder and the repository root. */
export const benchRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = path.resolve(benchRoot, '..');
