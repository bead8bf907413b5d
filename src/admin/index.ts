export { resolveAdminToken, ADMIN_TOKEN_FILE } from './adminToken.js';
export { handleAdminApi, taskJson } from './adminApi.js';
export type { AdminApiDeps } from './adminApi.js';
export { serveAdminSocket } from './adminSocket.js';
export type { AdminFeed, AdminSocketOptions } from './adminSocket.js';
export { storeCustomCover } from './customCovers.js';
