/**
 * @coverhelper/client: a blog server's client of coverhelper.
 *
 *   import { CoverClient, coverSrcset, signCoverUrl } from '@coverhelper/client';
 */
export { CoverClient, CoverClientError } from './client.js';
export type { CheckOptions, ConnectEvent, CoverClientErrorCode, CoverClientEvents, CoverClientOptions, CoverClientStats, DisconnectEvent } from './client.js';
export { signCoverUrl } from './sign.js';
export { coverSrcset, COVER_FORMATS } from './srcset.js';
export type { CoverFormat, SrcsetOptions } from './srcset.js';
export { RESULT_ERROR_CODES } from './protocol.js';
export type { CheckResult, CheckStatus, CoverSource, HelloFrame, ProtocolErrorCode, ResultErrorCode } from './protocol.js';
