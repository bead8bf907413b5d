export { archiveFile, isJobId, openArchive, packArchive, readme, removeArchive, ARCHIVE_DIR } from './archive.js';
export { JobCallbacks, signCallback } from './callbacks.js';
export type { CallbackEvent, CallbackOutcome, JobCallbackOptions } from './callbacks.js';
export { JobRunner, jobJson } from './jobRunner.js';
export type { JobJson, JobRunnerDeps } from './jobRunner.js';
