export { downloadMachine, backoffDelay, toFailure } from './downloadMachine.js';
export type { DownloadMachine, DownloadContext, DownloadEvent } from './downloadMachine.js';
export { supervisorMachine, gateStatus } from './supervisorMachine.js';
export type { Answer, Finished, Flight, SupervisorMachine, SupervisorRef, SupervisorInput, SupervisorEvent, SupervisorContext, DownloadRef, GateStatus } from './supervisorMachine.js';
export type * from './types.js';
export { jobMachine } from './jobMachine.js';
export type { JobMachine, JobStatus, JobEntry, JobInput, JobContext, JobEvent, FetchUrlsInput, PackInput, PackOutput } from './jobMachine.js';
