export { resolveAdminToken, resolveSecret, ADMIN_TOKEN_FILE } from './adminToken.js';
export { adminApi, taskJson } from './adminApi.js';
export type { AdminApiDeps } from './adminApi.js';
export { createAdminFeed } from './adminFeed.js';
export { serveAdminSocket, taskEvent } from './adminSocket.js';
export type { AdminFeed, AdminSocketOptions, TaskEvent } from './adminSocket.js';
export { storeCustomCover } from './customCovers.js';
export { timelineEvent } from './taskHistory.js';
export { DASHBOARD_CSP, DASHBOARD_PATHS, serveDashboard } from './dashboardAssets.js';
