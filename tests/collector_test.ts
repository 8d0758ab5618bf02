import assert from "node:assert/strict";
import { COLLECT_BEFORE_BYTES, CollectionBeforeCopy } from "../queue/collector.ts";

Deno.test("a receiver collects before huge copies only, and not while that costs over a quarter of one", () => {
  let clock = 0;
  let costMs = 5;
  let collections = 0;
  const policy = new CollectionBeforeCopy(() => {
    collections++;
    clock += costMs;
  }, () => clock);
  assert.equal(policy.before(COLLECT_BEFORE_BYTES - 1), false);
  assert.equal(collections, 0);
  assert.equal(policy.before(COLLECT_BEFORE_BYTES), true);
  assert.equal(policy.before(COLLECT_BEFORE_BYTES), true, "5 ms is well within a quarter");

  // The program's own heap grew: a collection now takes a second, against a budget of about
  // 89 ms for a GiB copy (a quarter of it at 3 GB/s).
  costMs = 1000;
  assert.equal(policy.before(1 << 30), true, "what it costs is known once it ran");
  assert.equal(policy.before(1 << 30), true, "one slow collection may be the scheduler's doing");
  let skipped = 0;
  while (!policy.before(1 << 30)) skipped++;
  // Forgiven a tenth a copy: 1000 × 0.9^23 < 89.5 ms.
  assert.equal(skipped, 23);
  skipped = 0;
  while (!policy.before(1 << 30)) skipped++;
  assert.equal(skipped, 23, "tried again, it cost as much");
  // The heap shrank back: the next try is cheap, and from then on every copy collects.
  costMs = 5;
  skipped = 0;
  while (!policy.before(1 << 30)) skipped++;
  assert.equal(skipped, 23);
  for (let i = 0; i < 5; i++) assert.equal(policy.before(1 << 30), true);
  // A larger copy allows a dearer collection: 2 GiB, about 179 ms.
  costMs = 120;
  assert.equal(policy.before(1 << 30), true);
  assert.equal(policy.before(1 << 30), true);
  assert.equal(policy.before(1 << 30), false, "120 ms is over a GiB copy's quarter");
  assert.equal(policy.before(2 ** 31), true, "but within a 2 GiB copy's");
});
