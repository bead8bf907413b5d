export { createDownloads } from './downloads.js';
export type { Downloads, DownloadsDeps } from './downloads.js';
export { fetchCover, storedCover } from './fetchCover.js';
export type { FetchCoverDeps } from './fetchCover.js';
