/**
 * The consumer of `usage.ts`: `get`, `get({ timeout })` with `EmptyError`, `getNowait`.
 *
 * @module
 */

import { actorContext, ClosedError, EmptyError } from "../mod.ts";

const { queues: { receiver }, args } = await actorContext<
  { receiver: "receiver" },
  { count: number }
>({ queues: { receiver: "receiver" } });

type Message = { idx: number; source: string; data: Float32Array };
let received = 0;
let bytes = 0;
function check(message: Message): void {
  // One producer: messages arrive in order, each exactly once.
  if (message.idx !== received || message.data[0] !== received) {
    throw new Error(`message ${message.idx} arrived when ${received} was expected`);
  }
  received++;
  bytes += message.data.byteLength;
}

/** Whether `error` says the producer finished: it closed, and every message was taken. A
 * producer of one message does so while the timed gets below wait. */
function drained(error: unknown): boolean {
  return error instanceof ClosedError && error.reason === "drained";
}

check(await receiver.get<Message>()); // waits

// or
try {
  check(await receiver.get<Message>({ timeout: 3000 })); // EmptyError after 3 s
} catch (error) {
  if (error instanceof EmptyError) console.log("consumer: nothing arrived within 3 s");
  else if (!drained(error)) throw error;
}

// or
while (received < args.count) {
  const message = receiver.getNowait<Message>();
  if (message === undefined) {
    // handle the empty case
    await new Promise((resolve) => setTimeout(resolve, 1));
    continue;
  }
  check(message);
}

try {
  await receiver.get({ timeout: 200 });
  throw new Error("the producer put more messages than announced");
} catch (error) {
  if (error instanceof EmptyError) console.log("consumer: no message within 200 ms (EmptyError)");
  else if (!drained(error)) throw error;
}

for await (const message of receiver) check(message as Message); // ends when the producer closed
console.log(`consumer: received ${received} messages, ${bytes} bytes; the producer has closed`);
receiver.close();
