export { openStore } from './openStore.js';
export { TOUCH_PRECISION_MS, touchPrecisionFor } from './coverIndex.js';
export type { OpenStore, StoreOptions } from './openStore.js';
export type {
  ClaimOutcome,
  Claims,
  ClusterState,
  CoverChange,
  CoverIndex,
  DeletionQueue,
  GateChange,
  HeldRow,
  JobChange,
  JobPatch,
  JobStore,
  JobSummary,
  NewDeletion,
  NodeReport,
  PauseSwitch,
  Store,
  StoreEventMap,
  TaskChange,
  TaskLedger,
  TaskListOptions,
  TaskPatch,
  TaskSort,
} from './ports.js';
export { ClusterSecretEntity, CoverEntity, DeletionEntity, JobEntity, NodeEntity, SettingEntity, TaskEntity, TaskEventEntity } from './entities.js';
export type { ClusterSecretRow, CoverRow, DeletionRow, JobRow, NodeRow, TaskEventRow, TaskRow } from './entities.js';
export { coverPath, coverPathOfVariant, isOriginalPath, isVariantPath, listVariantFiles, openCoverFile, removeVariantFiles, storedPathOfUrl, variantsFolderOf, openStoredFile, originalPathOf, removeCoverFile, removeCoverFiles, resolveInside, sha256, statStoredFiles, sweepTemp, writeCoverFile, TEMP_DIR } from './coverFiles.js';
export type { OpenCover } from './coverFiles.js';
export { createFile, inspectFile, makeFolder, moveFile, openFile, PathRefusedError, plainSegments, removePath, statFiles, sweepFolder } from './pathGuard.js';
export type { FileStat, OpenedFile, OpenRefusal, RemoveOutcome, Segments } from './pathGuard.js';
export { hostOfUrl, migrations } from './migrations.js';
export { TASK_EVENTS_PER_URL } from './dialect.js';
export { SECRET_NAMES } from './clusterJoin.js';
export type { JoinOutcome, SecretName, SharedSecrets } from './clusterJoin.js';
export { diskBytes, writeCover } from './coverRecord.js';
export type { CoverImage } from './coverRecord.js';
