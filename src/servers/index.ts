export { createHttpServer, MAX_FRAME_BYTES, requestToken, tokenMatches } from './httpServer.js';
export type { HttpServerDeps } from './httpServer.js';
export { parseClientFrame, doneFrame, resultHead, resultJson, resultTail, shortAnswer } from './protocol.js';
export { renderMetrics } from './metrics.js';
export type { ClientMessage, ParseOutcome, ServerFrame, MessageId } from './protocol.js';
