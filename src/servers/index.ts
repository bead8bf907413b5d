export { createHttpServer, requestToken, tokenMatches } from './httpServer.js';
export type { HttpServerDeps } from './httpServer.js';
export { renderMetrics } from './metrics.js';
export { Door, DOOR_PREFIX } from './doorRoute.js';
export type { DoorDeps } from './doorRoute.js';
