/** The poll policy: the driver's suggested delay, kept within the engine's bounds, or the default when it suggests none. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_POLL_POLICY, pollDelay } from '../../host/poll.ts';

test('a suggestion inside the bounds is taken, one outside is clamped, none gives the default', () => {
  const policy = { minPollMs: 10, maxPollMs: 1_000, defaultPollMs: 200 };
  assert.equal(pollDelay(50, policy), 50);
  assert.equal(pollDelay(0, policy), 10);
  assert.equal(pollDelay(60_000, policy), 1_000);
  assert.equal(pollDelay(undefined, policy), 200);
  // A default outside the bounds is clamped too.
  assert.equal(pollDelay(undefined, { ...policy, defaultPollMs: 5_000 }), 1_000);
  assert.equal(pollDelay(undefined), DEFAULT_POLL_POLICY.defaultPollMs);
});
