/**
 * Checks of a queue's shared state against itself: the counts the critical sections keep
 * (live ends, messages in flight) against the participant table and the slot ring they
 * summarise, and the cursors against each other. Reads only: the caller poisons the queue for
 * the problem a check returns.
 *
 * @module
 */

import type { ExtensionTable } from "./extensions.ts";
import * as L from "./layout.ts";
import type { Participants } from "./participants.ts";

/** Above any arena cursor a healthy queue has (the rebase keeps them below 2^50 plus two
 * arenas): where adding a message's size could round, a cursor is refused as corrupt. */
export const ARENA_CURSOR_LIMIT = 2 ** 51;

/** The checks, over one end's mapping of a queue; run under the queue's lock. */
export class Audit {
  readonly #i32: Int32Array;
  readonly #u32: Uint32Array;
  readonly #f64: Float64Array;
  readonly #ringSize: number;
  readonly #mask: number;
  readonly #arenaSize: number;
  readonly #participants: Participants;
  readonly #extensions: ExtensionTable;

  /**
   * @param main The main segment's memory.
   * @param ringSize Slots in the ring, as validated (see main_segment.ts Header).
   * @param arenaSize Bytes of the arena, as validated.
   * @param participants The participant table, whose entries the live counts count.
   * @param extensions The extension table, whose busy entries the messages in flight are in.
   */
  constructor(
    main: ArrayBuffer,
    ringSize: number,
    arenaSize: number,
    participants: Participants,
    extensions: ExtensionTable,
  ) {
    this.#i32 = new Int32Array(main);
    this.#u32 = new Uint32Array(main);
    this.#f64 = new Float64Array(main);
    this.#ringSize = ringSize;
    this.#mask = ringSize - 1;
    this.#arenaSize = arenaSize;
    this.#participants = participants;
    this.#extensions = extensions;
  }

  /**
   * Checks what the critical sections keep count of against what the counts summarise, and
   * returns the first disagreement (the queue is poisoned for it), or undefined: the live ends
   * against the participant table, the messages in flight and the arena cursors against the
   * slot ring. Only a writer outside the library (or a bug) makes them disagree, as a holder
   * killed mid-section is recounted at takeover. Runs with every reap, so that a waiter finds
   * out within a wait slice, rather than waiting for good on a forged count or taking one for
   * the end of the stream.
   */
  problem(): string | undefined {
    const u32 = this.#u32;
    const f64 = this.#f64;
    const extensions = this.#extensions;
    const senders = this.#participants.count(L.ParticipantKind.Sender);
    const receivers = this.#participants.count(L.ParticipantKind.Receiver);
    const counted = [u32[L.C_LIVE_SENDERS >> 2], u32[L.C_LIVE_RECEIVERS >> 2]];
    if (counted[0] !== senders || counted[1] !== receivers) {
      return `${counted[0]} senders and ${counted[1]} receivers counted live, ` +
        `${senders} and ${receivers} in the participant table`;
    }
    const cursors = this.cursorProblem();
    if (cursors !== undefined) return cursors;
    const tail = u32[L.C_TAIL >> 2];
    const span = (u32[L.C_WRITE >> 2] - tail) >>> 0;
    const behindRead = (u32[L.C_READ >> 2] - tail) >>> 0;
    const arenaTail = f64[L.C_ARENA_TAIL >> 3];
    const arenaHead = f64[L.C_ARENA_HEAD >> 3];
    let inFlight = 0;
    // Extensions that messages in flight are in (bit i: extension i).
    const used = new Uint8Array(L.MAX_EXTENSIONS); // 1: carries a message in flight
    for (let k = 0; k < span; k++) {
      const slot = (tail + k) & this.#mask;
      const s = L.slotOffset(slot);
      const state = Atomics.load(this.#i32, (s + L.S_STATE) >> 2);
      if (state === L.SlotState.Free) return `free slot ${slot} among the queued ones`;
      // The read cursor moves only over messages handed out: one still waiting behind it
      // would never be taken, nor reported, once a forged cursor skipped it. But for one that
      // a receiver gave back without the lock, which the next take or reap puts back in line
      // (SlotState.Returned; its taker must be a receiver then, as below), and a reservation
      // withdrawn (SlotState.Withdrawn), which is no message.
      if (
        k < behindRead && state !== L.SlotState.Taken && state !== L.SlotState.Released &&
        state !== L.SlotState.Done && state !== L.SlotState.Held &&
        state !== L.SlotState.Returned && state !== L.SlotState.Withdrawn
      ) {
        return `slot ${slot}, not yet taken (state ${state}), lies behind the read cursor`;
      }
      if (state !== L.SlotState.Done) inFlight++;
      if (state === L.SlotState.Writing || state === L.SlotState.Spare) {
        const at = L.participantOffset(u32[(s + L.S_SENDER) >> 2] % L.MAX_PARTICIPANTS);
        if (
          u32[(at + L.P_KIND) >> 2] !== L.ParticipantKind.Sender ||
          u32[(at + L.P_GEN) >> 2] !== u32[(s + L.S_SENDER_GEN) >> 2]
        ) {
          return `slot ${slot} is being written by no sender of the queue`;
        }
      }
      // Only its taker releases a Taken message, and the reap of its taker: one naming no
      // receiver would hold its capacity, and the ring behind it, for good. A Returned one's
      // taker is a receiver too: its removal puts such messages back before its entry goes.
      if (
        state === L.SlotState.Taken || state === L.SlotState.Held ||
        state === L.SlotState.Returned
      ) {
        const taker = u32[(s + L.S_TAKEN_BY) >> 2];
        if (
          taker >= L.MAX_PARTICIPANTS ||
          u32[(L.participantOffset(taker) + L.P_KIND) >> 2] !== L.ParticipantKind.Receiver
        ) {
          return `slot ${slot} is held by no receiver of the queue (taker ${taker})`;
        }
      }
      const segment = u32[(s + L.S_SEGMENT) >> 2];
      if (segment !== 0) {
        if (state !== L.SlotState.Done && segment <= L.MAX_EXTENSIONS) {
          // Its extension carries this message, and no other: one forged idle or empty would
          // be handed out for the next large message, written over this one.
          if (
            extensions.state(segment - 1) !== L.ExtensionState.Busy ||
            extensions.lastSlot(segment - 1) !== slot
          ) {
            return `slot ${slot} has a message in extension ${segment - 1}, not its own`;
          }
          used[segment - 1] = 1;
        }
        continue;
      }
      // Every arena message lies between the cursors, so none is handed out for writing twice.
      const end = f64[(s + L.S_ARENA_END) >> 3];
      const start = L.arenaStart(u32, f64, s);
      if (!(start >= arenaTail && start <= end && end <= arenaHead)) {
        return `slot ${slot} spans ${start}..${end}, outside the arena's ${arenaTail}..`;
      }
    }
    if (inFlight !== u32[L.C_IN_FLIGHT >> 2]) {
      return `${u32[L.C_IN_FLIGHT >> 2]} messages counted in flight, ${inFlight} queued`;
    }
    // An extension goes idle with its message (see SharedQueue's #creditLocked): one busy with
    // none would hold its share of the byte budget for good.
    for (let i = 0; i < L.MAX_EXTENSIONS; i++) {
      if (extensions.state(i) === L.ExtensionState.Busy && used[i] === 0) {
        return `extension ${i} is busy with no message in it`;
      }
    }
    return undefined;
  }

  /** Before the queue is taken for closed on a count of 0: the problem (to poison it for) if
   * the participant table still holds an end of `kind`, rather than end a stream early on a
   * forged count; else undefined. */
  noneLeftProblem(kind: number): string | undefined {
    const n = this.#participants.count(kind);
    if (n === 0) return undefined;
    const what = kind === L.ParticipantKind.Sender ? "senders" : "receivers";
    return `no ${what} counted live, ${n} in the participant table`;
  }

  /** Whether the slot cursors and the arena cursors are in order: the problem, or
   * undefined. */
  cursorProblem(): string | undefined {
    const u32 = this.#u32;
    const f64 = this.#f64;
    const tail = u32[L.C_TAIL >> 2];
    const read = u32[L.C_READ >> 2];
    const write = u32[L.C_WRITE >> 2];
    const ring = this.#ringSize;
    if (((read - tail) >>> 0) > ring || ((write - read) >>> 0) > ring) {
      return "slot cursors out of order";
    }
    if (((write - tail) >>> 0) > ring) return "slot ring overfull";
    const head = f64[L.C_ARENA_HEAD >> 3];
    const arenaTail = f64[L.C_ARENA_TAIL >> 3];
    if (!(arenaTail <= head && head - arenaTail <= this.#arenaSize && head < ARENA_CURSOR_LIMIT)) {
      return "arena cursors out of order";
    }
    return undefined;
  }
}
