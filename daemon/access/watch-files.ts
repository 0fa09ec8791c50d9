/**
 * Tells when files change, by polling their status (fs.watchFile). Polling,
 * not inotify: certificate rotation tools replace files by renaming a new
 * one over the old, or by swapping a symlinked directory (Kubernetes
 * secrets), and an inotify watch on the old inode hears neither.
 */
import { unwatchFile, watchFile, type Stats } from 'node:fs';

/** Calls `onChange` when any of `paths` changes (its mtime, size or inode); returns a function that stops watching. */
export function watchFiles(paths: readonly string[], intervalMs: number, onChange: (path: string) => void): () => void {
  const listeners = paths.map((path) => {
    const listener = (curr: Stats, prev: Stats) => {
      if (curr.mtimeMs !== prev.mtimeMs || curr.size !== prev.size || curr.ino !== prev.ino) onChange(path);
    };
    // persistent: false: a watch never holds the process open on its own.
    watchFile(path, { interval: intervalMs, persistent: false }, listener);
    return [path, listener] as const;
  });
  return () => {
    for (const [path, listener] of listeners) unwatchFile(path, listener);
  };
}
