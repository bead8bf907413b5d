/**
 * The proxy's placeholder (`--placeholder`): the built-in box made once with
 * sharp, a FILE read and decoded at start (a bad one stops the start with one
 * line naming the option, exit 2), or none.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { builtInPlaceholder, preparePlaceholder } from '../src/proxy/index.js';
import { runService } from './helpers/service.js';
import { tempDir } from './helpers/tempDir.js';

/** The line `preparePlaceholder` throws. */
async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ConfigError, `a ConfigError, not ${String(error)}`);
    assert.equal(error.option, 'placeholder');
    assert.equal(error.message.split('\n').length, 1, 'one line');
    return error.message;
  }
  assert.fail('no error');
}

describe('proxy placeholder', () => {
  it('is a neutral 16:10 light grey image by default, made once', async () => {
    const config = loadConfig({ argv: [], env: {}, isTTY: false, cwd: '/' });
    assert.equal(config.placeholder, 'built-in');
    const image = await preparePlaceholder(config);
    assert.ok(image);
    assert.equal(image.contentType, 'image/png');
    const { data, info } = await sharp(image.body).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height, image.width, image.height], [320, 200, 320, 200]);
    assert.equal(info.width / info.height, 16 / 10);
    assert.ok([...data].every((v) => v === 238), 'every pixel the same light grey');
    assert.match(image.etag, /^"[A-Za-z0-9_-]+"$/);
    assert.equal(await builtInPlaceholder(), image, 'kept in memory');
    assert.ok(image.body.length < 2000, `small (${image.body.length} bytes)`);
  });

  it('is nothing with --placeholder none', async () => {
    assert.equal(await preparePlaceholder({ placeholder: 'none', maxBytes: 1000 }), null);
  });

  it('reads a FILE once, proved an image by decoding it', async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'box.jpg');
    const jpeg = await sharp({ create: { width: 160, height: 100, channels: 3, background: '#336699' } }).jpeg().toBuffer();
    await writeFile(file, jpeg);
    const config = loadConfig({ argv: ['--placeholder', 'box.jpg'], env: {}, isTTY: false, cwd: dir });
    assert.equal(config.placeholder, file, 'made absolute');
    const image = await preparePlaceholder(config);
    assert.ok(image);
    assert.deepEqual([image.contentType, image.width, image.height], ['image/jpeg', 160, 100]);
    assert.ok(image.body.equals(jpeg));
    await writeFile(file, 'changed');
    assert.equal(await preparePlaceholder(config), image, 'read once and kept');
  });

  it('refuses a missing, empty, oversized, undecodable, truncated or SVG file, naming the option as given', async (t) => {
    const dir = await tempDir(t);
    const png = await sharp({ create: { width: 64, height: 40, channels: 3, background: '#eeeeee' } }).png().toBuffer();
    const files: Record<string, Buffer | string> = {
      'text.png': 'not an image at all',
      'empty.png': '',
      'cut.png': png.subarray(0, Math.floor(png.length * 0.6)),
      'box.svg': '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>',
      'big.png': png,
    };
    for (const [name, body] of Object.entries(files)) await writeFile(path.join(dir, name), body);
    await mkdir(path.join(dir, 'folder'));
    const at = (name: string) => path.join(dir, name);
    const flag = async (name: string, maxBytes = 1_000_000) => refusal(preparePlaceholder({ placeholder: at(name), maxBytes }));
    assert.match(await flag('missing.png'), new RegExp(`^invalid --placeholder \\(flag\\): cannot read ${at('missing.png')} \\(ENOENT\\)$`));
    assert.match(await flag('folder'), /^invalid --placeholder \(flag\): .*folder is not a file$/);
    assert.match(await flag('empty.png'), /^invalid --placeholder \(flag\): .*empty\.png is empty$/);
    assert.match(await flag('text.png'), /^invalid --placeholder \(flag\): .*text\.png is not an image that decodes/);
    assert.match(await flag('cut.png'), /^invalid --placeholder \(flag\): .*cut\.png is not an image that decodes/);
    assert.match(await flag('box.svg'), /^invalid --placeholder \(flag\): .*box\.svg is a svg image \(use JPEG, PNG, WebP, GIF or AVIF\)$/);
    assert.match(await flag('big.png', png.length - 1), new RegExp(`big\\.png is ${png.length} bytes, more than --max-bytes \\(${png.length - 1}\\)$`));
    const fromEnv = await refusal(preparePlaceholder({ placeholder: at('text.png'), maxBytes: 1000 }, { from: 'env', variable: 'COVERHELPER_PLACEHOLDER' }));
    assert.match(fromEnv, /^invalid COVERHELPER_PLACEHOLDER \(environment\): /);
  });

  it('the real process refuses a bad --placeholder at start with one line and exit code 2', async (t) => {
    const dir = await tempDir(t);
    const bad = path.join(dir, 'bad.png');
    await writeFile(bad, 'nope');
    const result = await runService(['--port', '0', '--data-dir', path.join(dir, 'data'), '--covers-dir', path.join(dir, 'covers'), '--placeholder', bad]);
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stderr, `coverhelper: invalid --placeholder (flag): ${bad} is not an image that decodes: Input buffer contains unsupported image format\n`);
  });
});
