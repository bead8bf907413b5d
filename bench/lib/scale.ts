/**
 * `BENCH_SCALE` shrinks every count (URLs, sockets, rows, seconds) for a quick
 * smoke run: `BENCH_SCALE=0.1 npm run bench`. The recorded figures in
 * docs/BENCHMARKS.md are at scale 1, the sizes the issue names.
 */
export function scale(): number {
  const raw = process.env.BENCH_SCALE;
  if (raw === undefined || raw === '') return 1;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || value > 1) throw new Error(`BENCH_SCALE must be a number in (0, 1], got ${raw}`);
  return value;
}

/** `n` scaled, rounded, at least `min`. */
export function scaled(n: number, min = 1): number {
  return Math.max(min, Math.round(n * scale()));
}

/** A number from the environment, or `fallback`. */
export function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new Error(`${name} must be a number, got ${raw}`);
  return value;
}
