export { sampleResources } from './resources.js';
export type { ResourceSample } from './resources.js';
