export { downloadMachine, backoffDelay, toFailure } from './downloadMachine.js';
export type { DownloadMachine, DownloadContext, DownloadEvent } from './downloadMachine.js';
export { supervisorMachine, gateStatus, ORPHAN_GRACE_MS } from './supervisorMachine.js';
export { Flights } from './flights.js';
export type { FlightState, Joined } from './flights.js';
export type { Asker, Answer, Finished, Flight, SupervisorMachine, SupervisorRef, SupervisorInput, SupervisorEvent, SupervisorContext, DownloadRef, GateStatus } from './supervisorMachine.js';
export type * from './types.js';
export { jobMachine } from './jobMachine.js';
export type { JobMachine, JobStatus, JobEntry, JobInput, JobContext, JobEvent, FetchUrlsInput, PackInput, PackOutput } from './jobMachine.js';
