/**
 * The one undici `Agent` every fetch goes through, with the private-network guard.
 *
 * Unless `allowPrivateNetwork` is set, the agent's connector refuses to open a
 * connection to a private address (see `isPrivateAddress`):
 *
 * - an IP-literal host (`http://127.0.0.1/`, `http://[::1]/`) is checked as it is —
 *   undici never calls a `connect.lookup` for literals, so a lookup hook alone
 *   would miss them;
 * - any other host is looked up here (`dns.lookup(host, { all: true })`), every
 *   address is checked, and the socket is opened to a checked address (with the
 *   original name as TLS servername), so there is no second lookup that could
 *   answer differently.
 *
 * A refusal is `CoverError('not_allowed', 'refusing private address <ip> for <host>')`;
 * undici hands connector errors to the request unchanged.
 *
 * The agent neither retries nor follows redirects: retries belong to the download
 * machine, and `downloadImage` follows redirects itself so every hop is checked.
 */
import { lookup as dnsLookup } from 'node:dns';
import type { LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Agent, buildConnector } from 'undici';
import type { Dispatcher } from 'undici';
import { CoverError } from '../errors.js';
import { isPrivateAddress } from './privateAddress.js';

export interface HttpClientOptions {
  /** Allow connections to loopback, private and link-local addresses. */
  allowPrivateNetwork: boolean;
  /** Sent as `User-Agent` on every request. */
  userAgent: string;
  /** Time to look up and connect, in ms. Default 10 000. */
  connectTimeoutMs?: number;
}

export interface HttpClient {
  /** The undici agent to pass as `dispatcher`. */
  readonly dispatcher: Dispatcher;
  readonly userAgent: string;
  readonly allowPrivateNetwork: boolean;
  /** Waits for running requests, then closes every connection. */
  close(): Promise<void>;
}

export interface GuardedConnectorOptions {
  allowPrivateNetwork: boolean;
  /** Time to look up and connect, in ms. Default 10 000. */
  connectTimeoutMs?: number;
}

type ConnectCallback = (error: Error | null, socket: Socket | TLSSocket | null) => void;

const defaultConnectTimeoutMs = 10_000;

function refusal(address: string, host: string): CoverError {
  return new CoverError('not_allowed', `refusing private address ${address} for ${host}`);
}

/**
 * An undici connector (for `new Agent({ connect })`) that refuses private
 * addresses unless `allowPrivateNetwork` is set. Exported for tests and for
 * anyone building their own dispatcher; `createHttpClient` uses it.
 */
export function createGuardedConnector(options: GuardedConnectorOptions): buildConnector.connector {
  const timeout = options.connectTimeoutMs ?? defaultConnectTimeoutMs;
  const base = buildConnector({ timeout, keepAlive: true });
  if (options.allowPrivateNetwork) return base;

  return (connectOptions, callback) => {
    const done: ConnectCallback = (error, socket) => {
      if (error) callback(error, null);
      else if (socket) callback(null, socket);
      else callback(new CoverError('network', 'connect gave no socket'), null);
    };
    // undici passes IPv6 literals without their brackets.
    const host = connectOptions.hostname;

    if (isIP(host) !== 0) {
      if (isPrivateAddress(host)) {
        done(refusal(host, host), null);
        return;
      }
      base(connectOptions, done);
      return;
    }

    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      done(new CoverError('network', `DNS lookup of ${host} took longer than ${timeout} ms`), null);
    }, timeout);

    dnsLookup(host, { all: true, order: 'verbatim' }, (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) {
        done(error, null);
        return;
      }
      if (addresses.length === 0) {
        done(new CoverError('network', `DNS lookup of ${host} returned no address`), null);
        return;
      }
      const blocked = addresses.find((a) => isPrivateAddress(a.address));
      if (blocked) {
        done(refusal(blocked.address, host), null);
        return;
      }
      // Connect to the checked addresses in turn; the first that answers wins.
      const servername = connectOptions.servername || host;
      const attempt = (index: number): void => {
        base({ ...connectOptions, hostname: addresses[index]!.address, servername }, (connectError, socket) => {
          if (connectError && index + 1 < addresses.length) {
            attempt(index + 1);
            return;
          }
          done(connectError, socket);
        });
      };
      attempt(0);
    });
  };
}

/** Builds the agent every fetch uses. Call `close()` when done. */
export function createHttpClient(options: HttpClientOptions): HttpClient {
  const agent = new Agent({
    connect: createGuardedConnector(options),
    keepAliveTimeout: 10_000,
    keepAliveMaxTimeout: 60_000,
  });
  return {
    dispatcher: agent,
    userAgent: options.userAgent,
    allowPrivateNetwork: options.allowPrivateNetwork,
    close: () => agent.close(),
  };
}
