/**
 * What TypeScript lets a user write: these checks run when the test file is type-checked
 * (`deno test` does so first), so a type that turns too loose or too strict fails the suite.
 * Each `@ts-expect-error` fails the check once its line stops being an error.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dtype, type DTypeNameFor, NdArray } from "../mod.ts";

Deno.test("NdArray's data is typed by the dtype name for zeros, and by data or the type asked", () => {
  const zeros = NdArray.zeros("float32", [2, 3]);
  const filled: Float32Array = zeros.data.fill(1);
  const wide = NdArray.zeros("int64", [2]);
  const first: bigint = wide.data[0];
  const labels = new NdArray("int32", [3], new Int32Array([7, 8, 9]));
  const sum: number = labels.data.reduce((a, b) => a + b, 0);
  const asked: NdArray<Float64Array> = new NdArray("complex128", [2]);
  assert.equal(filled.length, 6);
  assert.equal(first, 0n);
  assert.equal(sum, 24);
  assert.equal(asked.data.length, 4);
});

Deno.test("a dtype name that disagrees with the array type asked for does not type-check", () => {
  // Each of these throws, or hands out the wrong class, when the types let it through.
  assert.throws(() => {
    // @ts-expect-error: an int64 array holds a BigInt64Array, not a Float32Array
    new NdArray("int64", [2], new Float32Array(2));
  }, TypeError);
  // @ts-expect-error: a uint8 array holds a Uint8Array
  const wrong: NdArray<Float32Array> = new NdArray("uint8", [2]);
  assert.ok(wrong.data instanceof Uint8Array);
  // @ts-expect-error: int8 is not a dtype of Float64Array
  const named: DTypeNameFor<Float64Array> = "int8";
  assert.equal(named, "int8");
  // A DType object is not checked against the type (it is only known at run time).
  assert.ok(new NdArray(dtype("uint16"), [1]).data instanceof Uint16Array);
});

Deno.test("float16 arrays may hold raw bits in a Uint16Array", () => {
  const name: DTypeNameFor<Uint16Array> = "float16";
  assert.equal(NdArray.zeros(name, [3]).data.length, 3);
});
