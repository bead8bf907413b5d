export { createHttpServer, requestToken, tokenMatches } from './httpServer.js';
export type { HttpServerDeps } from './httpServer.js';
export { renderMetrics } from './metrics.js';
