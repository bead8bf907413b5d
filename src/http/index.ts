export { requestUrl, RouteTable } from './routeTable.js';
export type { Guard, RouteContext, RouteHandler, RouteMatch, RouteOptions } from './routeTable.js';
export { JSON_TYPE, refuseUpgrade, retryAfterHeader, sendError, sendJson, sendJsonText } from './respond.js';
export type { ErrorBody } from './respond.js';
export { bearerToken, hasToken, requestToken, tokenMatches } from './token.js';
export type { TokenPlace } from './token.js';
export { BODY_DEADLINE_MS, BodyBudget, MAX_BODIES_BYTES, readBody, readJsonObject, refuseBody, requestBodies } from './requestBody.js';
export type { BodyOptions, BodyRead, BodyRefusal } from './requestBody.js';
