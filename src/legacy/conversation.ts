/**
 * One conversation of the 2019 TCP protocol (the Go coverHelper's), byte for
 * byte, as an explicit state machine over the bytes a connection receives. It
 * knows no socket: the adapter feeds it what arrives (`receive`) and it calls
 * its `LegacyIo` to write, to start the check, to end or to refuse.
 *
 *   client                          server
 *   C<n>            (n = bytes of the URL string)
 *                                   G
 *   <URL string>    (n bytes, URLs joined by single spaces)
 *                                   W           one per URL as it is answered
 *                                   OK          when every URL is
 *   R
 *                                   L<len>      (len = bytes of the result string)
 *   C
 *                                   <results>   joined by spaces, in input order
 *   O
 *                                   (the connection is ended)
 *
 * States and what moves between them:
 *   command   waiting for `C`; anything else first is a bad command
 *   digits    `C` seen: waiting for the first digit of n
 *   length    digits seen; the end of a read sends `G` (once). More digits still
 *             extend n (a command split across reads, or a client that does not
 *             wait for `G`); the first other byte starts the URL string. n = 0 is
 *             final at the end of its read (the URL string is empty). So a URL
 *             string may not begin with a digit.
 *   urls      collecting n bytes; then the check starts (`io.check`)
 *   working   the check runs: `W` as each URL is answered, then `OK`
 *   awaitR    waiting for `R`, then `L<len>` is sent
 *   awaitC    waiting for `C`, then the results are sent
 *   awaitO    waiting for `O`, then the conversation is over
 *   over      finished; the adapter ends the connection
 *   refused   bad input: the adapter closes the connection (nothing more is read)
 *
 * Reads are not framed: pieces may arrive split anywhere or merged (a client may
 * write the whole conversation at once); bytes that come before their state are
 * kept and read when it comes.
 *
 * What one conversation holds is bounded, and each byte is looked at once (linear
 * time however the bytes are split): the URL string as its pieces come (at most
 * the announced n, joined once when complete and let go when the check starts),
 * and while the check runs at most MAX_BYTES_AHEAD bytes sent ahead of their turn
 * (`R`, `C` and `O` of a client that does not wait); more is refused at once.
 */

export type ConversationState = 'command' | 'digits' | 'length' | 'urls' | 'working' | 'awaitR' | 'awaitC' | 'awaitO' | 'over' | 'refused';

export interface LegacyIo {
  write(text: string): void;
  /** The URL string is complete: check these URLs (one per position, empty ones included). */
  check(urls: string[]): void;
  /** The conversation is over (`O` received). */
  over(): void;
  /** Bad input: why, for the log; the connection is closed. */
  refuse(reason: string): void;
}

export interface LegacyLimits {
  /** Most URLs in one URL string (`--max-batch`). */
  maxUrls: number;
  /** Most bytes of one URL string. */
  maxBytes: number;
}

/** The largest URL string accepted: 8 MiB. */
export const MAX_URL_STRING_BYTES = 8 * 1024 * 1024;
/** Most bytes kept while the check runs (`RCO` of a client that does not wait, and some slack). */
export const MAX_BYTES_AHEAD = 64;

const BYTE_C = 0x43;
const BYTE_O = 0x4f;
const BYTE_R = 0x52;
const isDigit = (byte: number) => byte >= 0x30 && byte <= 0x39;
const shown = (byte: number) => JSON.stringify(String.fromCharCode(byte));

export class LegacyConversation {
  private current: ConversationState = 'command';
  /** Bytes received and not yet read by a state. */
  private pending: Buffer = Buffer.alloc(0);
  /** n, as its digits come. */
  private length = 0;
  private digits = 0;
  private sentG = false;
  private urlParts: Buffer[] = [];
  private urlBytes = 0;
  /** URLs in the check (the number of `W`s owed), and `W`s sent. */
  private urls = 0;
  private sentW = 0;
  private results = '';

  constructor(
    private readonly io: LegacyIo,
    private readonly limits: LegacyLimits,
  ) {}

  get state(): ConversationState {
    return this.current;
  }

  private get finished(): boolean {
    return this.current === 'refused' || this.current === 'over';
  }

  /**
   * Bytes the URL string being sent may come to hold: its announced length (as
   * far as its digits have come) from `C` until the check starts, else 0.
   */
  get urlStringBytes(): number {
    return this.current === 'length' || this.current === 'urls' ? this.length : 0;
  }

  /** One read's bytes. */
  receive(chunk: Buffer): void {
    if (this.finished) return;
    // What is pending is a few bytes at most (MAX_BYTES_AHEAD): joining it to the next read is no copy of the past.
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    this.read();
    // The end of a read ends the command, as far as a client that waits for G is concerned.
    if (this.current === 'length' && !this.sentG) {
      this.sendG();
      if (this.length === 0) this.startCheck();
    }
  }

  /** One URL's answer is known: `W`. */
  answeredOne(): void {
    if (this.current !== 'working' || this.sentW >= this.urls) return;
    this.sentW++;
    this.io.write('W');
  }

  /** Every URL is answered: the `W`s still owed, then `OK`; `results` in input order. */
  answered(results: readonly string[]): void {
    if (this.current !== 'working') return;
    if (this.sentW < this.urls) this.io.write('W'.repeat(this.urls - this.sentW));
    this.sentW = this.urls;
    this.results = results.join(' ');
    this.io.write('OK');
    this.current = 'awaitR';
    this.read();
  }

  private sendG(): void {
    this.sentG = true;
    this.io.write('G');
  }

  private refuse(reason: string): void {
    this.current = 'refused';
    this.pending = Buffer.alloc(0);
    this.urlParts = [];
    this.io.refuse(reason);
  }

  private addDigit(byte: number): void {
    this.digits++;
    this.length = this.length * 10 + (byte - 0x30);
    if (this.digits > 10 || this.length > this.limits.maxBytes) {
      this.refuse(`a URL string of ${this.length} bytes is over the limit of ${this.limits.maxBytes}`);
    }
  }

  /** Reads the pending bytes for as long as the current state can take them. */
  private read(): void {
    const bytes = this.pending;
    let at = 0;
    while (at < bytes.length && !this.finished) {
      const byte = bytes[at]!;
      switch (this.current) {
        case 'command':
          if (byte !== BYTE_C) return this.refuse(`bad first command ${JSON.stringify(bytes.subarray(at, at + 16).toString('latin1'))} (expected C<length>)`);
          this.current = 'digits';
          at++;
          break;
        case 'digits':
          if (!isDigit(byte)) return this.refuse(`C must be followed by the byte length of the URL string, got ${shown(byte)}`);
          this.current = 'length';
          this.addDigit(byte);
          at++;
          break;
        case 'length':
          if (isDigit(byte)) {
            this.addDigit(byte);
            at++;
            break;
          }
          // The URL string begins (from a client that did not wait for G).
          if (!this.sentG) this.sendG();
          if (this.length === 0) return this.refuse('the URL string is longer than its announced 0 bytes');
          this.current = 'urls';
          break;
        case 'urls': {
          const take = Math.min(this.length - this.urlBytes, bytes.length - at);
          this.urlParts.push(bytes.subarray(at, at + take));
          this.urlBytes += take;
          at += take;
          // Complete: the check starts, and whatever follows is read as `working` reads it.
          if (this.urlBytes === this.length) this.startCheck();
          break;
        }
        case 'working':
          // R, C and O of a client that does not wait are read in their turn; anything
          // else means the URL string was longer than announced.
          if (byte !== BYTE_R) return this.refuse(`the URL string is longer than its announced ${this.length} bytes`);
          if (bytes.length - at > MAX_BYTES_AHEAD) return this.refuse(`${bytes.length - at} bytes sent while the check runs; at most ${MAX_BYTES_AHEAD} (R, C and O) are kept`);
          // A copy: the few bytes kept do not hold on to the read they came in.
          this.pending = Buffer.from(bytes.subarray(at));
          return;
        case 'awaitR':
          if (byte !== BYTE_R) return this.refuse(`expected R after OK, got ${shown(byte)}`);
          at++;
          this.io.write(`L${Buffer.byteLength(this.results)}`);
          this.current = 'awaitC';
          break;
        case 'awaitC':
          if (byte !== BYTE_C) return this.refuse(`expected C after L, got ${shown(byte)}`);
          at++;
          this.io.write(this.results);
          this.current = 'awaitO';
          break;
        case 'awaitO':
          if (byte !== BYTE_O) return this.refuse(`expected O after the results, got ${shown(byte)}`);
          this.current = 'over';
          this.io.over();
          break;
        default:
          return;
      }
    }
    if (!this.finished) this.pending = bytes.subarray(at);
  }

  /** The URL string is complete: the check starts. */
  private startCheck(): void {
    const urls = Buffer.concat(this.urlParts).toString('utf8').split(' ');
    this.urlParts = [];
    if (urls.length > this.limits.maxUrls) return this.refuse(`${urls.length} URLs in one request; at most ${this.limits.maxUrls} (--max-batch)`);
    this.urls = urls.length;
    this.current = 'working';
    this.io.check(urls);
  }
}
