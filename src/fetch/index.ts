export { classifyUrl, hostAllowed, isPrivateHost } from './urlRules.js';
export { isPrivateAddress } from './privateAddress.js';
export type { UrlKind, VideoRef } from './urlRules.js';
export { createHttpClient, createGuardedConnector } from './httpClient.js';
export type { HttpClient, HttpClientOptions, GuardedConnectorOptions } from './httpClient.js';
export { downloadImage, getJson, isAbort, parseRetryAfter, toFetchError } from './download.js';
export type { DownloadOptions, DownloadResult, GetJsonOptions, RequestGate } from './download.js';
export { resolveVideoCover, viewApiUrl } from './bilibili.js';
export type { ResolveOptions } from './bilibili.js';
