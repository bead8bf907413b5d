/**
 * The route table of the HTTP edge: method + path pattern → handler. Every HTTP
 * door of the service is one entry (see src/servers/routes.ts); adding a door is
 * adding an entry.
 *
 * Patterns are matched against the path as sent (before the `?`, not decoded
 * nor normalised: a handler sees exactly what was matched):
 *
 *   /healthz          that path only
 *   /api/jobs/:id     `:name` takes one non-empty segment (`params.id`)
 *   /covers/*         a trailing `*` takes the rest, slashes and all, maybe empty
 *                     (`params['*']`); `/covers` and `/coversX/…` do not match
 *
 * When several patterns match, the most specific wins, segment by segment: a
 * literal before a `:param` before a `*`. Then:
 *
 *   no pattern matches            404 `not_found`
 *   the pattern lacks the method  405 `method_not_allowed` with `Allow`
 *   HEAD                          served by the GET handler where no HEAD is
 *                                 registered (Node sends no body to a HEAD)
 *
 * Guards answer a caller that may not pass (a missing token) and stop the
 * request. A route's guard runs once its method is known (`{ guard }`); an
 * area's guard (`guard(pattern, …)`) runs before any matching, so a caller it
 * refuses learns nothing, not even whether a route exists (the admin API).
 * A refused or unmatched request's body is read and dropped.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendError } from './respond.js';

export interface RouteContext {
  /** The request URL (its query in `url.searchParams`). */
  url: URL;
  /** The path as sent, before the `?`. */
  path: string;
  /** `:name` segments, and `*` for the rest. */
  params: Readonly<Record<string, string>>;
}

export type RouteHandler = (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) => void | Promise<void>;

/** Answers and returns false when the request may not pass; true lets it through. */
export type Guard = (req: IncomingMessage, res: ServerResponse, ctx: RouteContext) => boolean;

export interface RouteOptions {
  /** Runs after the method is known, before the handler. */
  guard?: Guard;
}

export type RouteMatch =
  | { kind: 'found'; handler: RouteHandler; guard: Guard | undefined; params: Record<string, string>; pattern: string }
  | { kind: 'not_found' }
  | { kind: 'method_not_allowed'; allow: string[] };

type Segment = { kind: 'literal'; text: string } | { kind: 'param'; name: string } | { kind: 'rest' };

/** One pattern and what each method does on it. */
interface Resource {
  pattern: string;
  segments: Segment[];
  methods: Map<string, { handler: RouteHandler; guard: Guard | undefined }>;
}

const RANK = { literal: 0, param: 1, rest: 2 } as const;

function compile(pattern: string): Segment[] {
  if (!pattern.startsWith('/')) throw new Error(`route pattern ${pattern} does not start with /`);
  const parts = pattern.split('/').slice(1);
  return parts.map((part, i): Segment => {
    if (part === '*') {
      if (i !== parts.length - 1) throw new Error(`route pattern ${pattern}: * comes last`);
      return { kind: 'rest' };
    }
    if (part.startsWith(':')) {
      if (part.length === 1) throw new Error(`route pattern ${pattern}: a parameter needs a name`);
      return { kind: 'param', name: part.slice(1) };
    }
    return { kind: 'literal', text: part };
  });
}

/** The shape of a pattern: two patterns of one shape are one resource. */
const shapeOf = (segments: Segment[]) => segments.map((s) => (s.kind === 'literal' ? `=${s.text}` : s.kind)).join('/');

/** The params of `path` (split) if `segments` match it. */
function matchSegments(segments: Segment[], parts: string[]): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment.kind === 'rest') {
      // `/covers/*` needs the slash after `covers`: `/covers` alone has no part here.
      if (i >= parts.length) return undefined;
      params['*'] = parts.slice(i).join('/');
      return params;
    }
    const part = parts[i];
    if (part === undefined) return undefined;
    if (segment.kind === 'literal' ? part !== segment.text : part === '') return undefined;
    if (segment.kind === 'param') params[segment.name] = part;
  }
  return parts.length === segments.length ? params : undefined;
}

/** Negative when `a` is more specific than `b`. */
function bySpecificity(a: Resource, b: Resource): number {
  const length = Math.min(a.segments.length, b.segments.length);
  for (let i = 0; i < length; i++) {
    const difference = RANK[a.segments[i]!.kind] - RANK[b.segments[i]!.kind];
    if (difference !== 0) return difference;
  }
  return b.segments.length - a.segments.length;
}

/**
 * The request target as a URL, read as a path on this host whatever it looks
 * like (`//x`, `///`, `//[::1` are paths here, never a scheme-relative URL);
 * undefined when it is not a path at all. Never throws.
 */
export function requestUrl(target: string | undefined): URL | undefined {
  const raw = target ?? '/';
  if (!raw.startsWith('/')) return undefined;
  try {
    return new URL(`http://localhost${raw}`);
  } catch {
    return undefined;
  }
}

export class RouteTable {
  private readonly resources: Resource[] = [];
  private readonly areas: { segments: Segment[]; guard: Guard }[] = [];

  /** Adds a route: `method` (or several) on `pattern`. */
  add(method: string | readonly string[], pattern: string, handler: RouteHandler, options: RouteOptions = {}): this {
    const segments = compile(pattern);
    const shape = shapeOf(segments);
    let resource = this.resources.find((r) => shapeOf(r.segments) === shape);
    if (resource === undefined) {
      resource = { pattern, segments, methods: new Map() };
      this.resources.push(resource);
      this.resources.sort(bySpecificity);
    }
    for (const name of typeof method === 'string' ? [method] : method) {
      const upper = name.toUpperCase();
      if (resource.methods.has(upper)) throw new Error(`route ${upper} ${pattern} is already in the table`);
      resource.methods.set(upper, { handler, guard: options.guard });
    }
    return this;
  }

  get(pattern: string, handler: RouteHandler, options?: RouteOptions): this {
    return this.add('GET', pattern, handler, options);
  }

  post(pattern: string, handler: RouteHandler, options?: RouteOptions): this {
    return this.add('POST', pattern, handler, options);
  }

  /** Guards every path `pattern` matches, before matching any route (routes or not). */
  guard(pattern: string, guard: Guard): this {
    this.areas.push({ segments: compile(pattern), guard });
    return this;
  }

  /** The routes, most specific first: `GET /healthz`, … (HEAD implied by GET is not listed). */
  list(): string[] {
    return this.resources.flatMap((r) => [...r.methods.keys()].map((method) => `${method} ${r.pattern}`));
  }

  /** What the table does with `method` on `path`. */
  match(method: string, path: string): RouteMatch {
    const parts = path.split('/').slice(1);
    for (const resource of this.resources) {
      const params = matchSegments(resource.segments, parts);
      if (params === undefined) continue;
      const route = resource.methods.get(method) ?? (method === 'HEAD' ? resource.methods.get('GET') : undefined);
      if (route !== undefined) return { kind: 'found', handler: route.handler, guard: route.guard, params, pattern: resource.pattern };
      const allow = [...resource.methods.keys()];
      if (allow.includes('GET') && !allow.includes('HEAD')) allow.splice(allow.indexOf('GET') + 1, 0, 'HEAD');
      return { kind: 'method_not_allowed', allow };
    }
    return { kind: 'not_found' };
  }

  /**
   * Serves one request: area guards, the route's guard, its handler; or 404/405 (400 for a target that is no path).
   * `onRoute` hears the matched route's pattern (`/covers/*`), or `none`, before anything is answered.
   */
  async serve(req: IncomingMessage, res: ServerResponse, onRoute?: (route: string) => void): Promise<void> {
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0] || '/';
    const url = requestUrl(req.url);
    if (url === undefined) {
      req.resume();
      return sendError(res, 400, 'bad_request', 'the request target is not a path');
    }
    const ctx: RouteContext = { url, path, params: {} };
    const parts = path.split('/').slice(1);
    const found = this.match(method, path);
    onRoute?.(found.kind === 'found' ? found.pattern : 'none');
    for (const area of this.areas) {
      if (matchSegments(area.segments, parts) !== undefined && !area.guard(req, res, ctx)) return void req.resume();
    }
    if (found.kind === 'not_found') {
      req.resume();
      return sendError(res, 404, 'not_found', `no route for ${method} ${path}`);
    }
    if (found.kind === 'method_not_allowed') {
      req.resume();
      return sendError(res, 405, 'method_not_allowed', `${method} is not allowed on ${path}; allowed: ${found.allow.join(', ')}`, { allow: found.allow.join(', ') });
    }
    const routed: RouteContext = { ...ctx, params: found.params };
    if (found.guard !== undefined && !found.guard(req, res, routed)) return void req.resume();
    await found.handler(req, res, routed);
  }
}
