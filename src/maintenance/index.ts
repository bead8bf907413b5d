export { sampleResources } from './resources.js';
export type { ResourceSample } from './resources.js';
export { ResourceGuard, overLimits } from './resourceGuard.js';
export type { ResourceLimits } from './resourceGuard.js';
export { DeletionRunner } from './deletionRunner.js';
export { CacheLimits } from './cacheLimits.js';
export { ColorPass } from './colorPass.js';
export type { ColorPassOutcome } from './colorPass.js';
