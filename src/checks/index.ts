export { answerFields, CoverChecks, coverUrl } from './checkCovers.js';
export type { CheckDeps, CheckResult, CheckStatus } from './checkCovers.js';
