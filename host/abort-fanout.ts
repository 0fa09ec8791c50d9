/**
 * One abort listener on a long-lived signal, however many calls follow it.
 *
 * Every driver call follows the engine's one shutdown signal. A listener per
 * call piles up on it (Node warns past ten: MaxListenersExceededWarning), and
 * `AbortSignal.any([call, shutdown])` is no better on Node 20: each combined
 * signal that is listened to stays in the long-lived signal's list of
 * dependants for good (100,000 calls left 100,000 entries after a forced GC
 * on Node 20.20; nodejs/node#55351, #64476). So the calls following a signal
 * are kept in a set, behind one listener that is removed when the set is
 * empty.
 */

interface Fanout {
  controllers: Set<AbortController>;
  onAbort: () => void;
}

const fanouts = new WeakMap<AbortSignal, Fanout>();

/**
 * Aborts `controller` (with the same reason) when `outer` aborts, at once if
 * it already has. Returns the function that stops following; call it when
 * the call ends.
 */
export function followAbort(outer: AbortSignal, controller: AbortController): () => void {
  if (outer.aborted) {
    controller.abort(outer.reason);
    return () => {};
  }
  const fanout = fanouts.get(outer) ?? listen(outer);
  fanout.controllers.add(controller);
  return () => {
    if (!fanout.controllers.delete(controller) || fanout.controllers.size > 0) return;
    if (fanouts.get(outer) === fanout) fanouts.delete(outer);
    outer.removeEventListener('abort', fanout.onAbort);
  };
}

function listen(outer: AbortSignal): Fanout {
  const controllers = new Set<AbortController>();
  const onAbort = () => {
    fanouts.delete(outer);
    for (const c of controllers) c.abort(outer.reason);
    controllers.clear();
  };
  const fanout = { controllers, onAbort };
  fanouts.set(outer, fanout);
  outer.addEventListener('abort', onAbort, { once: true });
  return fanout;
}
