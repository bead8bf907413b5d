export { answerFields, CoverChecks, coverUrl } from './checkCovers.js';
export type { CheckDeps, CheckResult, CheckStatus, HeldCheck, KeptCheck, WrappedChecks } from './checkCovers.js';
