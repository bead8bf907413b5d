/**
 * An origin on 127.0.0.1 serving image bombs: small bodies that decode to many
 * pixels, for the memory scenario's image-bomb part.
 *
 *   GET /bomb/<i>.png|.jpg   one of `BOMBS`, different bytes for every <i>
 *
 * The base images are costly to make (a 9900×9900 JPEG takes ~15 s), so they
 * are made with sharp once and kept in the system temp folder
 * (`coverhelper-bench-bombs-v1/`, reused by later runs; delete it to remake
 * them). Each URL's body is its base image with a text chunk (PNG) or comment
 * segment (JPEG) naming the URL inserted after the header: a valid image whose
 * bytes differ per URL.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { step } from './report.js';

export interface BombKind {
  name: string;
  format: 'png' | 'jpeg';
  width: number;
  height: number;
  progressive: boolean;
  /** How many of the 40 URLs serve it. */
  count: number;
}

/**
 * The 40 bombs: half 10000×10000 greyscale PNGs (~115 KB, 100 MP: at the old
 * limit, four times the new one), progressive and baseline 6000×4000 JPEGs (24
 * MP, just under the new limit, ~1 MB), and progressive 9900×9900 JPEGs (98 MP,
 * just under the old limit, ~5 MB, inside `--max-bytes`). Smooth content: small
 * bodies; decoding costs the same whatever the pixels hold.
 */
export const BOMBS: BombKind[] = [
  { name: 'png-10000x10000', format: 'png', width: 10_000, height: 10_000, progressive: false, count: 20 },
  { name: 'jpeg-progressive-6000x4000', format: 'jpeg', width: 6000, height: 4000, progressive: true, count: 10 },
  { name: 'jpeg-baseline-6000x4000', format: 'jpeg', width: 6000, height: 4000, progressive: false, count: 5 },
  { name: 'jpeg-progressive-9900x9900', format: 'jpeg', width: 9900, height: 9900, progressive: true, count: 5 },
];

const cacheDir = path.join(os.tmpdir(), 'coverhelper-bench-bombs-v1');

async function makeBase(kind: BombKind): Promise<Buffer> {
  if (kind.format === 'png') {
    return sharp({ create: { width: kind.width, height: kind.height, channels: 3, background: '#808080' } })
      .toColourspace('b-w')
      .png({ compressionLevel: 9 })
      .toBuffer();
  }
  // A small gradient-like pattern scaled up: smooth, so the JPEG stays small.
  const [w, h] = [Math.round(kind.width / 100), Math.round(kind.height / 100)];
  const small = Buffer.alloc(w * h * 3);
  for (let i = 0; i < small.length; i++) small[i] = (i * 37) & 255;
  return sharp(small, { raw: { width: w, height: h, channels: 3 } })
    .resize(kind.width, kind.height, { kernel: 'cubic' })
    .jpeg({ quality: 80, progressive: kind.progressive })
    .toBuffer();
}

/** The base image of `kind`, from the cache folder or made now. */
async function base(kind: BombKind): Promise<Buffer> {
  const file = path.join(cacheDir, `${kind.name}.${kind.format === 'png' ? 'png' : 'jpg'}`);
  try {
    return await readFile(file);
  } catch {
    step(`making ${kind.name} (kept in ${cacheDir})`);
    const data = await makeBase(kind);
    await mkdir(cacheDir, { recursive: true });
    await writeFile(`${file}.tmp`, data);
    await rename(`${file}.tmp`, file);
    return data;
  }
}

/** The PNG with a `tEXt` chunk after IHDR (signature 8 bytes + IHDR 25). */
function pngWithText(png: Buffer, text: string): Buffer {
  const data = Buffer.from(`Comment\0${text}`, 'latin1');
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write('tEXt', 4, 'latin1');
  data.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + data.length)), 8 + data.length);
  return Buffer.concat([png.subarray(0, 33), chunk, png.subarray(33)]);
}

/** The JPEG with a comment segment after SOI and a leading APP0 (JFIF) segment. */
function jpegWithComment(jpeg: Buffer, text: string): Buffer {
  const at = jpeg[2] === 0xff && jpeg[3] === 0xe0 ? 4 + jpeg.readUInt16BE(4) : 2;
  const data = Buffer.from(text, 'latin1');
  const segment = Buffer.alloc(4 + data.length);
  segment[0] = 0xff;
  segment[1] = 0xfe;
  segment.writeUInt16BE(2 + data.length, 2);
  data.copy(segment, 4);
  return Buffer.concat([jpeg.subarray(0, at), segment, jpeg.subarray(at)]);
}

export interface BombOrigin {
  url: string;
  /** One URL per bomb, in `BOMBS` order. */
  urls: string[];
  /** What each URL serves. */
  kinds: BombKind[];
  /** Bytes of each kind's base image. */
  sizes: Map<string, number>;
  close(): Promise<void>;
}

export async function startBombOrigin(): Promise<BombOrigin> {
  const bases = new Map<string, Buffer>();
  for (const kind of BOMBS) bases.set(kind.name, await base(kind));
  const kinds = BOMBS.flatMap((kind) => Array.from({ length: kind.count }, () => kind));
  const bodies = kinds.map((kind, i) => {
    const text = `coverhelper-bench bomb ${i}`;
    return kind.format === 'png' ? pngWithText(bases.get(kind.name)!, text) : jpegWithComment(bases.get(kind.name)!, text);
  });
  const server = http.createServer((req, res) => {
    const m = /^\/bomb\/(\d+)\.(png|jpg)$/.exec(req.url ?? '');
    const body = m ? bodies[Number(m[1])] : undefined;
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': m![2] === 'png' ? 'image/png' : 'image/jpeg', 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    urls: kinds.map((kind, i) => `${url}/bomb/${i}.${kind.format === 'png' ? 'png' : 'jpg'}`),
    kinds,
    sizes: new Map([...bases].map(([name, data]) => [name, data.length])),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
