/** The one-shot import of a 2019 coverHelper's covers and database (`npm run import-legacy`). */
export { importLegacy, LegacyDbError, openLegacyDb, summaryLine } from './importCovers.js';
export { ImportProgress } from './progress.js';
