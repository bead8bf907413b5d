export { createHttpServer, requestToken, tokenMatches } from './httpServer.js';
export type { HttpServerDeps } from './httpServer.js';
export { createMetrics } from './metrics.js';
export type { Metrics, MetricsSources } from './metrics.js';
export { Door, DOOR_PREFIX } from './doorRoute.js';
export type { DoorDeps } from './doorRoute.js';
export { handleJobs, JOBS_PREFIX } from './jobsRoute.js';
export type { JobsRouteDeps } from './jobsRoute.js';
