export { answerFields, CoverChecks, coverUrl } from './checkCovers.js';
export type { CheckDeps, CheckResult, CheckStatus, KeptCheck, WrappedChecks } from './checkCovers.js';
