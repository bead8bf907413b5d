export { startLegacyServer, legacyAnswer, IDLE_TIMEOUT_MS } from './legacyServer.js';
export type { LegacyServer, LegacyServerDeps } from './legacyServer.js';
export { LegacyConversation, MAX_URL_STRING_BYTES } from './conversation.js';
export type { ConversationState, LegacyIo, LegacyLimits } from './conversation.js';
