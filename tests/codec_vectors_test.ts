/**
 * The golden vectors of codec/vectors/v1.json, checked in both directions: encoding each
 * value gives exactly its bytes, decoding the bytes gives the value; invalid vectors throw
 * DecodeError.
 */
import assert from "node:assert/strict";
import { decode, encode } from "../codec/mod.ts";
import { DecodeError } from "../queue/errors.ts";
import { assertSame, fromHex, toHex } from "./codec_helpers.ts";
import { fromNotation, toNotation, type VectorFile } from "./codec_vectors.ts";

const file: VectorFile = JSON.parse(
  await Deno.readTextFile(new URL("../codec/vectors/v1.json", import.meta.url)),
);

Deno.test("codec vectors: the file covers every tag, binary class and dtype", () => {
  assert.ok(file.valid.length >= 80 && file.invalid.length >= 30);
  const tags = new Set<number>();
  for (const v of file.valid) tags.add(fromHex(v.hex)[16]);
  for (const t of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 32, 33]) {
    assert.ok(tags.has(t), `no vector with tag 0x${t.toString(16)} at the root`);
  }
  const text = JSON.stringify(file.valid.map((v) => v.value));
  for (
    const c of ["ArrayBuffer", "DataView", "Float16Array", "BigUint64Array", '"hole"', '"dtype"']
  ) {
    assert.ok(text.includes(c), c);
  }
});

for (const v of file.valid) {
  Deno.test(`codec vector ${v.name}: ${v.description}`, () => {
    const expected = fromNotation(v.value);
    const bytes = fromHex(v.hex);
    if (!v.decodeOnly) assert.equal(toHex(encode(expected)), v.hex, "encoding differs");
    for (const view of [false, true]) {
      const back = decode(bytes, { view });
      assertSame(back, expected, `decoding (view ${view})`);
      // The notation of what came back is the vector's (an int64 beyond 2^53 excepted: it
      // comes back as a bigint).
      if (!v.decodeOnly) assert.deepEqual(toNotation(back), v.value);
    }
  });
}

for (const v of file.invalid) {
  Deno.test(`codec vector (invalid) ${v.name}: ${v.description}`, () => {
    assert.throws(() => decode(fromHex(v.hex)), (e: unknown) => {
      assert.ok(e instanceof DecodeError, `not a DecodeError: ${e}`);
      assert.ok((e as Error).message.includes(v.error), (e as Error).message);
      return true;
    });
  });
}
