/**
 * Small statistics for benchmark samples: nearest-rank percentiles (so a
 * p99 of fewer than 100 samples is the largest one, never an interpolation
 * past what was seen) and a summary of a sample set.
 */

/** Nearest-rank percentile (`p` in 0..100) of `values`; NaN for none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** The median (mean of the middle two for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** What a sample set says. */
export interface Summary {
  n: number;
  min: number;
  median: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Summarises `values` (NaN fields when empty). */
export function summarise(values: readonly number[]): Summary {
  const n = values.length;
  return {
    n,
    min: n ? values.reduce((a, b) => Math.min(a, b)) : NaN,
    median: median(values),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max: n ? values.reduce((a, b) => Math.max(a, b)) : NaN,
    mean: n ? values.reduce((a, b) => a + b, 0) / n : NaN,
  };
}
