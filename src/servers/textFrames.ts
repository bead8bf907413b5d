/**
 * WebSocket text frames as a server sends them (RFC 6455 §5.2: FIN set, opcode 1,
 * unmasked), many in one buffer, for one socket write.
 *
 * A herd (500 sockets waiting on the same 200 downloads) makes 100,000 `result`
 * frames. Sent one by one through `ws`, each cost a string, a conversion, a frame
 * header buffer and stream bookkeeping; here each frame's payload is two ready
 * buffers (its check's `{"type":"result","id":…,` and the answer's shared tail),
 * and a socket's gathered frames are copied into one buffer once.
 *
 * Writing these bytes straight to the TCP socket under a `ws` WebSocket is the
 * same as `ws.send` frame by frame when no extension transforms the payload: the
 * server runs with `perMessageDeflate: false`, so `ws` queues nothing and writes
 * every frame in call order (its `Sender.sendFrame`).
 */

/** Bytes of the header for a payload of `length` bytes. */
function headerLength(length: number): number {
  return length < 126 ? 2 : length < 65_536 ? 4 : 10;
}

/** Writes the header of a text frame of `length` payload bytes at `at`; where the payload starts. */
function writeHeader(out: Buffer, at: number, length: number): number {
  out[at++] = 0x81; // FIN, text
  if (length < 126) {
    out[at++] = length;
  } else if (length < 65_536) {
    out[at++] = 126;
    out.writeUInt16BE(length, at);
    at += 2;
  } else {
    out[at++] = 127;
    out.writeUInt32BE(Math.floor(length / 2 ** 32), at);
    out.writeUInt32BE(length >>> 0, at + 4);
    at += 8;
  }
  return at;
}

/**
 * The start of one text frame whose payload is `head` then `rest` bytes more:
 * its header and `head` in one buffer, to be written before the rest (a buffer
 * many sockets share, written to each as it is, with no copy).
 */
export function textFrameStart(head: Buffer, rest: number): Buffer {
  const length = head.length + rest;
  const out = Buffer.allocUnsafe(headerLength(length) + head.length);
  out.set(head, writeHeader(out, 0, length));
  return out;
}

/**
 * One buffer holding a text frame for each pair `parts[2k] + parts[2k + 1]`
 * (both UTF-8 bytes; a frame's payload is the two one after the other).
 */
export function textFramePairs(parts: readonly Buffer[]): Buffer {
  if (parts.length % 2 !== 0) throw new Error('textFramePairs: parts come in pairs');
  let total = 0;
  for (let i = 0; i < parts.length; i += 2) {
    const length = parts[i]!.length + parts[i + 1]!.length;
    total += headerLength(length) + length;
  }
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (let i = 0; i < parts.length; i += 2) {
    const head = parts[i]!;
    const tail = parts[i + 1]!;
    at = writeHeader(out, at, head.length + tail.length);
    out.set(head, at);
    at += head.length;
    out.set(tail, at);
    at += tail.length;
  }
  return out;
}
