export { CheckSession, MAX_URLS_IN_PROGRESS } from './checkSession.js';
export type { CheckSink } from './checkSession.js';
export { SharedChecks } from './sharedChecks.js';
export type { SharedMember } from './sharedChecks.js';
