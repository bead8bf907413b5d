export { CheckSession, MAX_URLS_IN_PROGRESS } from './checkSession.js';
export type { CheckSink } from './checkSession.js';
