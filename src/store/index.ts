export { CoverStore } from './coverStore.js';
export { TaskStore } from './taskStore.js';
export type { TaskPatch } from './taskStore.js';
export { CoverEntity, TaskEntity } from './entities.js';
export type { CoverRow, TaskRow } from './entities.js';
export { coverPath, findCoverFile, removeCoverFile, resolveInside, sha256, sweepTemp, writeCoverFile, TEMP_DIR } from './coverFiles.js';
export { migrations } from './migrations.js';
