/**
 * The hot path's baseline, run as its own process (as the service is): a bare
 * `ws` server on 127.0.0.1 that answers every text frame with a precomputed
 * reply. No parsing, no lookup: the limit of one WebSocket on this machine.
 *
 *   node --import tsx bench/lib/bareWsServer.ts REPLIES.json
 *
 * REPLIES.json: `{ "<name>": { "reply": "<base64>", "idAt": n, "idFrom": n, "idLength": n } }`.
 * A client picks a reply with `/?r=<name>`; the bytes `idFrom…+idLength` of each
 * request (its id, at a fixed place) are copied to `idAt` of a copy of the reply,
 * so answers carry the request's id and the client's loop is the same as
 * against the service. Like the service it greets each socket with a `hello`
 * frame. Prints `listening PORT`; exits when stdin closes.
 *
 * A reply with `before` (base64 frames) sends those first, as they are (the
 * herd's 200 `result` frames, captured from the service), then the reply; all of
 * a request's frames leave in one write (the TCP socket corked meanwhile): the
 * least a server can do to answer a herd (bench/herd.ts, its physical limit).
 */
import { readFileSync } from 'node:fs';
import { WebSocketServer } from 'ws';
import { helloFrame } from '@coverhelper/client/protocol';

interface Reply {
  reply: string;
  idAt: number;
  idFrom: number;
  idLength: number;
  before?: string[];
}

const replies = new Map(
  Object.entries(JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Record<string, Reply>).map(([name, r]) => [
    name,
    { ...r, bytes: Buffer.from(r.reply, 'base64'), frames: (r.before ?? []).map((frame) => Buffer.from(frame, 'base64')) },
  ]),
);

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 1024 * 1024 });
wss.on('connection', (ws, req) => {
  const name = new URL(req.url ?? '/', 'http://x').searchParams.get('r') ?? '';
  const r = replies.get(name);
  if (!r) {
    ws.close(1008, `no reply named ${name}`);
    return;
  }
  ws.send(helloFrame({ version: '0.0.0-bare', maxBatch: 1000, maxFrameBytes: 1024 * 1024 }));
  const tcp = (ws as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
  ws.on('message', (data: Buffer) => {
    if (r.frames.length > 0) {
      tcp.cork();
      for (const frame of r.frames) ws.send(frame, { binary: false });
      process.nextTick(() => tcp.uncork());
    }
    const out = Buffer.allocUnsafe(r.bytes.length);
    r.bytes.copy(out);
    data.copy(out, r.idAt, r.idFrom, r.idFrom + r.idLength);
    ws.send(out, { binary: false });
  });
});
wss.on('listening', () => {
  const address = wss.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : String(address)}\n`);
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
