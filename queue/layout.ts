/**
 * The shared-memory layout of a queue, described once. Every other module reads and writes
 * shared memory through these named offsets.
 *
 * A queue is one main segment plus up to {@linkcode MAX_EXTENSIONS} extension segments for
 * messages too large for the arena. The main segment:
 *
 * ```
 *  byte 0      ┌──────────────────────────────────────────────────────────────┐
 *              │ header: magic, layout version, capacity, ring size, limits,  │  written once by
 *              │ arena offset/size, segment size, queue state, byte budget    │  the creator
 *  byte 64     ├──────────────────────────────────────────────────────────────┤
 *              │ lock word: futex mutex, holder's index + 1, tag (mutex.ts)   │  own cache line
 *  byte 128    ├──────────────────────────────────────────────────────────────┤
 *              │ put sequence (futex word) │ receivers waiting                │  own cache line
 *  byte 192    ├──────────────────────────────────────────────────────────────┤
 *              │ release sequence (futex) │ senders waiting for room │        │  own cache line
 *              │ unsettled │ waiting for acks │ getMany holder │ receiver epoch│
 *  byte 256    ├──────────────────────────────────────────────────────────────┤
 *              │ cursors (under the lock): slot tail/read/write, in flight,   │
 *              │ live senders/receivers, extension epoch, trim due, arena     │
 *              │ head/tail, totals, how the last sender/receiver left, how    │
 *              │ many of each died, the extensions' name salt (set once),     │
 *              │ segments dropped lately (bytes, when), how long idle         │
 *              │ extensions are kept (set once), the claim of a put waiting   │
 *              │ for budget (bytes, by, gen, when), the settle under way,     │
 *              │ how many extensions carry a message                          │
 *  byte 448    ├──────────────────────────────────────────────────────────────┤
 *              │ extension table: MAX_EXTENSIONS × 32 B                       │
 *              │   {state, gen, size, idle since, slot}                       │
 *  byte 2496   ├──────────────────────────────────────────────────────────────┤
 *              │ participant table: MAX_PARTICIPANTS × 64 B                   │
 *              │   {kind, gen, pid, acked, fd, tid, process, thread start,    │
 *              │    pid namespace, time namespace, waiting, ack waiting}      │
 *  SLOTS       ├──────────────────────────────────────────────────────────────┤
 *              │ slot ring: ringSize × 64 B                                   │
 *              │   {state, sender, senderGen, takenBy, segment, run,          │
 *              │    offset, length, arenaEnd, runStart}                       │
 *  arenaOffset ├──────────────────────────────────────────────────────────────┤  page aligned
 *              │ arena: message bytes, allocated as a ring of 64-byte aligned │
 *              │ blocks, reclaimed in slot order                              │
 *              └──────────────────────────────────────────────────────────────┘
 * ```
 *
 * Liveness uses open-file-description record locks on the main segment, never on its data:
 * every participant holds a shared lock on byte {@linkcode ANY_ALIVE_LOCK_BYTE} and an
 * exclusive lock on byte `participantLockByte(i)`. The kernel drops them when the process dies,
 * so a lock probe tells a dead participant apart from a live one without trusting pids.
 * A Worker's thread can end (`terminate()`) while its process, and so its locks, live on:
 * an entry also records the thread that opened the end, and a participant whose thread has
 * ended counts as dead too. An end in the same process (`P_PROCESS`) then has the native
 * side unmap and close what the ended thread left, which frees its lock byte for reuse.
 *
 * @module
 */

/** "SHMQ" in little-endian. */
export const MAGIC = 0x514d4853;
/** Bumped whenever anything in this file changes meaning (tests/layout_version_test.ts
 * fingerprints what it exports, and fails on a change recorded under the same version). */
export const LAYOUT_VERSION = 23;

export const PAGE_SIZE = 4096;
export const CACHE_LINE = 64;
/** Alignment of every message in the arena and of every array payload inside a message. */
export const MESSAGE_ALIGN = 64;

// Header (written once by the creator, validated by everyone who opens).
export const H_MAGIC = 0; // u32
export const H_VERSION = 4; // u32
export const H_CAPACITY = 8; // u32
export const H_RING_SIZE = 12; // u32, power of two
export const H_MAX_PARTICIPANTS = 16; // u32
export const H_MAX_EXTENSIONS = 20; // u32
export const H_ARENA_OFFSET = 24; // f64
export const H_ARENA_SIZE = 32; // f64
export const H_SEGMENT_SIZE = 40; // f64
export const H_STATE = 48; // u32: QueueState
export const H_BYTE_BUDGET = 56; // f64: bound on arena + extension bytes (one message may exceed)

/** Lifecycle of a queue as a whole. */
export const QueueState = {
  /** Created, header not yet complete. */
  Initializing: 0,
  Ready: 1,
  /** State found inconsistent (a crash inside the lock, or a hostile writer): unusable. */
  Poisoned: 2,
} as const;

// Lock-free words, each on its own cache line.
export const W_LOCK = 64; // i32 futex mutex (its word's bits: see queue/mutex.ts)
export const W_PUT_SEQ = 128; // i32, bumped after every publish; receivers futex-wait on it
export const W_RECEIVERS_WAITING = 132; // i32
export const W_RELEASE_SEQ = 192; // i32, bumped after every release; senders wait on it
export const W_SENDERS_WAITING = 196; // i32: senders waiting for room
/** i32: slots released or withdrawn without the lock and not yet settled (see
 * SlotState.Released, SlotState.Withdrawn). Only a hint of how far to scan, never below
 * zero: a count too high costs a settle one scan of the ring, one too low (a releaser killed
 * between its release and its count) delays a settle until a full scan or the ring's tail
 * reaches the slot; no slot is ever lost. */
export const W_UNSETTLED = 200;
/** i32: senders in waitForAllAck (they wait on the release sequence too, but are always woken:
 * wake-ups for room may be batched). */
export const W_ACK_WAITING = 204;
/** i32: the receiver whose getMany batch may hold messages (see SlotState.Held), as its
 * participant index + 1, or 0. Set before its first hold, with a CAS, by a receiver that is
 * the only one; cleared as its batch returns, or by its close or reap. While it is set, other
 * receivers take none of the later messages of a sender whose message it has Taken or Held.
 * One word, set and cleared whole, so a holder killed anywhere leaves nothing to recount. */
export const W_HOLDER = 208;
/** u32: bumped whenever a receiver joins or leaves. A message taken while its taker was the
 * only receiver may be held only if this is still what it was at the take once the taker is
 * marked holder: no receiver came, took its sender's later messages, and went meanwhile. One
 * that joins later sees the mark. */
export const W_RECEIVER_EPOCH = 212;
/** i32: messages given back without the lock and not yet put back in line (see
 * SlotState.Returned), counted after their CAS: a take that sees it nonzero puts them back
 * first, so that none of its sender's later messages passes them. Only a hint, never below
 * zero: one too low (a receiver killed between its CAS and its count) leaves the message for
 * the next reap, or for a take that finds the queue drained; one too high costs a scan. */
export const W_RETURNED = 216;

// Cursors, read and written only under the lock.
export const C_TAIL = 256; // u32 slot index: oldest slot not yet reclaimed
export const C_READ = 260; // u32 slot index: next slot to hand to a receiver
export const C_WRITE = 264; // u32 slot index: next slot to reserve
export const C_IN_FLIGHT = 268; // u32: messages put (or being put) and not yet released
export const C_LIVE_SENDERS = 272; // u32
export const C_LIVE_RECEIVERS = 276; // u32
/** u32: bumped whenever an extension segment is dropped or replaced, so every end notices at
 * its next put or take that a mapping it caches is stale, and unmaps it (frees its memory)
 * instead of holding it until it next waits. */
export const C_EXTENSION_EPOCH = 280;
/** u32: nonzero once an extension went idle: the queue may be past its byte budget, and the
 * next put of any sender that fits it drops idle extensions until it is not. */
export const C_TRIM_DUE = 284;
export const C_ARENA_HEAD = 288; // f64: logical arena offset of the next allocation
export const C_ARENA_TAIL = 296; // f64: logical arena offset below which all is free
export const C_TOTAL_PUT = 304; // f64: messages published since creation
export const C_TOTAL_RELEASED = 312; // f64
/** u32: how the last sender (bit 0) and the last receiver (bit 1) to leave left: set when it
 * was reaped as dead (killed, crashed), clear when it closed. Only for error messages. */
export const C_LAST_LEFT_DEAD = 320;
export const LAST_SENDER_DIED = 1;
export const LAST_RECEIVER_DIED = 2;
/** u32: senders reaped as dead (killed, crashed, their Worker ended) since the queue was made,
 * so a receiver can tell a stream cut short from one whose senders all finished. */
export const C_SENDERS_DIED = 324;
/** u32: the same for receivers. */
export const C_RECEIVERS_DIED = 328;
/** 2 × u32: 64 random bits in every extension segment's name, written once by the creator
 * before the header is complete. Queue names are listed in /dev/shm for every user to see:
 * without a secret of the (0600) queue, another user could make the extension names first. */
export const C_EXTENSION_SALT = 332;
/** f64: bytes of extension segments that any end unlinked in the drop window, which lasts 2 s
 * from the last drop (C_SHM_DROPPED_AT). Their memory comes back to /dev/shm once every end
 * has unmapped them, so an end short of room there waits for them whoever dropped them, not
 * only for its own. */
export const C_SHM_DROPPED_BYTES = 344;
/** f64: `Date.now()` of the last such drop: wall-clock time, which every process shares. */
export const C_SHM_DROPPED_AT = 352;
/** f64: milliseconds an extension segment is kept once no extension message is in flight,
 * Infinity for the queue's life (the `keepIdleSegmentsMs` option). Written once by the
 * creator, before the header is complete. */
export const C_KEEP_IDLE_MS = 360;
/** f64: extension bytes a put waits for, the budget being taken by messages in flight; 0 =
 * none. Other puts of extension messages leave it that much room, so a stream of smaller
 * ones cannot keep it waiting. One claim at a time; void once its sender leaves or stops
 * renewing it (C_CLAIM_AT), so a put that gave up, or a dead sender, holds nobody back. */
export const C_CLAIM_BYTES = 376;
export const C_CLAIM_BY = 384; // u32: the claiming sender's participant index
export const C_CLAIM_GEN = 388; // u32: and its entry's generation
export const C_CLAIM_AT = 392; // f64: `Date.now()` of the claim's last renewal
/** u32: slot + 1 of the received message whose settle is under way, 0 when none; with
 * C_CREDIT_BASE, what C_TOTAL_RELEASED was before it. Written under the lock before the slot
 * goes Done, cleared once the message is counted: a holder killed in between left the total
 * one short for good, and the end that takes the lock over can finish the count. */
export const C_CREDITING_SLOT = 400;
export const C_CREDIT_BASE = 408; // f64
/** u32: extension entries that are Busy, kept with their states (see ExtensionTable), so that
 * a put into the arena learns whether any message is in an extension without a scan of the
 * table. A count gone wrong (a forged word) costs settles, never a message; a recount after a
 * lock takeover sets it from the table. */
export const C_EXTENSIONS_BUSY = 416;

// Extension table.
export const EXTENSIONS_OFFSET = 448;
export const EXTENSION_STRIDE = 32;
/** Extension messages in flight at once, at most: a receiver holding more leases of them
 * than this (a replay buffer) would hold back every sender of one (16 did, at capacity 32). */
export const MAX_EXTENSIONS = 64;
export const E_STATE = 0; // u32: ExtensionState
export const E_GEN = 4; // u32: bumped whenever the segment behind the entry is replaced
export const E_SIZE = 8; // f64: byte size of the segment
/** f64: `Date.now()` when the entry last went idle: dropped once this is C_KEEP_IDLE_MS old,
 * each on its own, so a stream of smaller messages does not keep a huge idle one alive. */
export const E_IDLE_SINCE = 16;
/** u32: the slot (ring index) of the message last placed in the segment. A message in flight
 * in it must be that slot's: a state forged idle or empty then cannot have a second message
 * written over one still in flight, nor a receiver take the second one's bytes for the first. */
export const E_SLOT = 24;

/** What an extension table entry holds. */
export const ExtensionState = {
  /** No segment. */
  Empty: 0,
  /** A segment exists (or is being made by a sender) and no message uses it. */
  Idle: 1,
  /** A message lives in it. */
  Busy: 2,
} as const;

// Participant table.
export const PARTICIPANTS_OFFSET = EXTENSIONS_OFFSET + MAX_EXTENSIONS * EXTENSION_STRIDE;
export const PARTICIPANT_STRIDE = 64;
export const MAX_PARTICIPANTS = 256;
export const P_KIND = 0; // u32: ParticipantKind
export const P_GEN = 4; // u32: bumped when the entry is taken, so stale references miss
export const P_PID = 8; // i32: the holder's process (with P_TID, names its thread)
export const P_ACKED = 12; // u32: messages of this sender released by receivers
/** i32: the holder's fd of the main segment plus one (0 = none), for the process whose token
 * is at `P_PROCESS`: a hint that an ended Worker there may have left it open. What is closed
 * is decided by that process's own records (native closeOrphans), never by this field. A
 * closing end clears it, having closed its fd itself: so an entry still taken whose end is
 * gone with 0 here was left by `close()` (one that could not have the lock), not by a death,
 * and its reap counts it closed. */
export const P_FD = 16;
export const P_TID = 20; // i32: the holder's thread, 0 = unknown (no /proc: locks only)
export const P_PROCESS = 24; // f64: the holder's process token (native processToken)
export const P_THREAD_START = 32; // f64: its thread's start time, so a reused tid is no match
export const P_PID_NAMESPACE = 40; // f64: the pid namespace its pid and tid belong to
export const P_TIME_NAMESPACE = 48; // f64: the time namespace its start time belongs to
/** i32: this end's share of W_RECEIVERS_WAITING (a receiver) or W_SENDERS_WAITING (a
 * sender): an end killed while it waits never takes its announcement back, and the reap of
 * its entry does it instead (a stale count costs every peer a wake-up syscall per message). */
export const P_WAITING = 56;
/** i32: the same for W_ACK_WAITING (a sender in waitForAllAck). */
export const P_ACK_WAITING = 60;

/** Who holds a participant entry. */
export const ParticipantKind = { Free: 0, Sender: 1, Receiver: 2 } as const;

/** Byte every live participant holds a shared lock on: a sweep takes it exclusively. */
export const ANY_ALIVE_LOCK_BYTE = 0;
/** Byte participant `index` holds an exclusive lock on while it lives. */
export function participantLockByte(index: number): number {
  return 1 + index;
}

// Slot ring.
export const SLOTS_OFFSET = PARTICIPANTS_OFFSET + MAX_PARTICIPANTS * PARTICIPANT_STRIDE;
export const SLOT_STRIDE = 64;
export const S_STATE = 0; // i32, Atomics: SlotState
export const S_SENDER = 4; // u32 participant index
export const S_SENDER_GEN = 8; // u32
export const S_TAKEN_BY = 12; // u32 participant index of the receiver holding it
export const S_SEGMENT = 16; // u32: 0 = arena, 1 + i = extension i
/**
 * u32: nonzero when the slot belongs to a sender's run (see SlotState.Spare): the run's first
 * message and the spares reserved with it, whose messages share an arena chunk (from
 * S_RUN_START, never wrapping). A spare's arena end, written under the lock, cannot be its
 * message's, which its sender places without the lock: it is the run's first message's end
 * for every spare but the last, and the chunk's end for the last. Reclaimed in ring order, a
 * run so frees its first message's bytes with that message, and the rest with its last slot.
 */
export const S_RUN = 20;
export const S_OFFSET = 24; // f64: byte offset inside the segment (arena-relative for the arena)
export const S_LENGTH = 32; // f64: encoded message length
/** f64: logical arena head after this allocation (arena only; in a run, see S_RUN) */
export const S_ARENA_END = 40;
/** f64: for a slot of a run (see S_RUN), the logical arena offset its message lies past: the
 * chunk's start for the run's first message, the first message's end for a spare. */
export const S_RUN_START = 48;

/** Lifecycle of one slot. */
export const SlotState = {
  Free: 0,
  /** Reserved by a sender that is still writing the message. */
  Writing: 1,
  /** Published: complete and visible to receivers. */
  Ready: 2,
  /** Handed to a receiver, not yet released. */
  Taken: 3,
  /** Released, cancelled, or abandoned by a dead sender: waits to be reclaimed. */
  Done: 4,
  /**
   * Released by its receiver without taking the lock. The next critical section settles it:
   * returns its capacity, credits its sender's ack, and makes it Done. Keeps decoding and
   * releasing out of the lock, so sender and receiver run in parallel.
   */
  Released: 5,
  /**
   * Taken ahead by a receiver that was the only one when it took: the next few messages in
   * ring order come out with the one it asked for, under one lock, and are handed out later
   * without the lock (a CAS to `Taken`). Any other receiver (one that joined since) takes it
   * over like a `Ready` one, with a CAS, so prefetching never holds work back. Back to
   * `Ready` when its holder closes or dies before handing it out.
   */
  Prefetched: 6,
  /**
   * A receiver taking over another's `Prefetched` message, between its CAS and its record of
   * itself as the taker, under the lock. The holder's lock-free hand-out and release both
   * fail on it. Only a lock holder killed in between leaves one; recovery makes it `Ready`.
   */
  Claimed: 7,
  /**
   * Reserved ahead by the queue's only sender, with room in its run's arena chunk, and not
   * written yet: the sender's next small put takes it with a CAS to `Writing`, without the
   * lock. Counted in flight. Any lock holder may cancel it with a CAS to `Done` (the sender's
   * own next locked reservation, its close or reap, a second sender joining), and then, as the
   * spares end the ring, takes them out of it (the write cursor back over them, Free); the
   * sender's CAS then fails and it reserves under the lock. Later messages of its sender wait
   * behind it, as behind a `Writing` slot.
   */
  Spare: 8,
  /**
   * Taken and copied out by a receiver's `getMany` whose batch has not returned yet: released
   * with the rest of the batch as it returns. Only its holder moves it, like a `Taken` one;
   * but should the holder close or die first, its caller never saw it, so it goes back to
   * `Ready` (and the read cursor back to it), as a `Prefetched` one does: a receiver killed
   * inside a batch of large copies lost every message of it. Only while the holder is the
   * only receiver, and marked as such (W_HOLDER); one that joins meanwhile takes none of their
   * senders' later messages, which a message given back must still precede.
   */
  Held: 9,
  /**
   * Given up by its sender without the lock, never published: a reservation cancelled (a
   * draft's cancel, a put whose encoding failed) while a stopped peer (SIGSTOP, a debugger)
   * keeps the lock. Settled as `Released` is, by the next critical section of any end
   * (counted in W_UNSETTLED meanwhile), but as a message never delivered: no ack, nothing
   * received. Unlike `Writing`, it holds back none of its sender's later messages.
   */
  Withdrawn: 10,
  /**
   * Taken by a closing receiver that never handed it to its caller, and given back without
   * the lock (a stopped peer kept it, or a running one past the stuck limit), and counted in
   * W_RETURNED. Its taker never touches it again. Ahead of the read cursor, another receiver
   * takes it over as it does a `Prefetched` one; behind it, the next take (or reap, or the
   * removal of its taker's entry) moves the cursor back to it and makes it `Ready`. A state
   * of its own, so that the audit lets it lie behind the cursor, and so that a lock-free
   * hand-out of the receiver that first took it ahead (as `Prefetched`), begun before another
   * took it over, cannot take it back.
   */
  Returned: 11,
} as const;

/** Largest capacity accepted: slot memory stays small and u32 cursor arithmetic exact. */
export const MAX_CAPACITY = 1 << 20;
/** Smallest and largest arena. */
export const MIN_ARENA_SIZE = 64 * 1024;
export const MAX_ARENA_SIZE = 2 ** 40;
/** Largest single message: far above any machine's memory, keeps offsets exact in f64. */
export const MAX_MESSAGE_SIZE = 2 ** 46;

/** Rounds `n` up to a multiple of the power of two `align`. */
export function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

/** Ring size for a capacity: twice the capacity, so released messages behind a held one still
 * leave room to put, rounded to a power of two for cheap masking. */
export function ringSizeFor(capacity: number): number {
  let size = 16;
  while (size < capacity * 2) size *= 2;
  return size;
}

/** Byte offset of the arena for a ring size. */
export function arenaOffsetFor(ringSize: number): number {
  return alignUp(SLOTS_OFFSET + ringSize * SLOT_STRIDE, PAGE_SIZE);
}

/** Arena bytes a message of `length` encoded bytes takes: whole MESSAGE_ALIGN blocks, at least
 * one. */
export function arenaBytes(length: number): number {
  return alignUp(Math.max(length, 1), MESSAGE_ALIGN);
}

/**
 * The logical arena offset from which the arena message of the slot at byte `s` of the main
 * segment may hold memory: its arena end less its length, or for a slot of a run (see S_RUN),
 * whose message may lie anywhere in the run's chunk past it, its S_RUN_START.
 */
export function arenaStart(u32: Uint32Array, f64: Float64Array, s: number): number {
  if (u32[(s + S_RUN) >> 2] !== 0) return f64[(s + S_RUN_START) >> 3];
  return f64[(s + S_ARENA_END) >> 3] - arenaBytes(f64[(s + S_LENGTH) >> 3]);
}

/** Byte offset of slot `index` (already masked to the ring). */
export function slotOffset(index: number): number {
  return SLOTS_OFFSET + index * SLOT_STRIDE;
}

/** Byte offset of extension entry `index`. */
export function extensionOffset(index: number): number {
  return EXTENSIONS_OFFSET + index * EXTENSION_STRIDE;
}

/** Byte offset of participant entry `index`. */
export function participantOffset(index: number): number {
  return PARTICIPANTS_OFFSET + index * PARTICIPANT_STRIDE;
}

/** Queue names: a fixed prefix and 128 random bits, so no other file can be named. */
export const NAME_PREFIX = "shmq-";
export const QUEUE_NAME_PATTERN = /^\/shmq-[0-9a-f]{32}$/;
/** Extension segment name: the queue's name, the entry index, its generation and the
 * queue's salt (16 hex digits, see C_EXTENSION_SALT). */
export function extensionName(queueName: string, index: number, gen: number, salt: string): string {
  return `${queueName}-x${index}-${gen}-${salt}`;
}
/** Matches any /dev/shm entry of this library: group 1 is the queue id. */
export const SHM_ENTRY_PATTERN = /^shmq-([0-9a-f]{32})(?:-x\d+-\d+-[0-9a-f]{16})?$/;
