/**
 * One end's attachment to a queue's shared memory, and every operation on the shared state.
 *
 * Each sender or receiver object owns one of these: its own descriptor, mapping and
 * participant entry, so that the kernel's per-open-file-description locks tell every end
 * apart, even two ends in one process. Everything that changes shared state happens here,
 * under the queue's mutex, except publishing a written message, which is one release store
 * (the participant table's entries are written through participants.ts, called from here; a new
 * queue's header through main_segment.ts, before any other end can open it).
 *
 * @module
 */

import { isDetached } from "../codec/array_buffer.ts";
import { useStreamingCopy } from "../codec/bulk_copy.ts";
import * as native from "../ffi/native.ts";
import { ARENA_CURSOR_LIMIT, Audit } from "./audit.ts";
import * as L from "./layout.ts";
import { ClosedError } from "./errors.ts";
import { noSweepOnExit, sweepOnExit } from "./exit_sweeper.ts";
import {
  type ExtensionMapping,
  ExtensionMappings,
  type ExtensionUse,
  type MessageView,
} from "./extension_mappings.ts";
import { extensionSizeFor, ExtensionTable, UNMAP_GRACE_MS } from "./extensions.ts";
import {
  goneError,
  type Header,
  holdAliveByte,
  randomQueueName,
  validateHeader,
  writeHeader,
} from "./main_segment.ts";
import { ShmMutex } from "./mutex.ts";
import { type Leaving, Participants } from "./participants.ts";
import {
  deferredUnmapDone,
  deferUnmap,
  leaveToThisProcess,
  noLongerLeftToThisProcess,
  stuckMsAtExit,
  track,
  untrack,
} from "./open_ends.ts";
import {
  ensureRoom,
  mapFd,
  type Mapping,
  NOT_OWN_SEGMENT,
  prefaultOrExplain,
  type SegmentRoom,
  segmentRoom,
  unmapAll,
} from "./segment.ts";
import type { QueueStats } from "./stats.ts";
import { isMainThread } from "./this_thread.ts";
import type { Timer } from "./timer.ts";
import {
  attemptDeadline,
  BRIEF_LOCK_MS,
  briefDeadline,
  MIN_SPIN_MS,
  NO_WAIT,
  REAP_EVERY_MS,
  ROOM_SLICE_MS,
} from "./wait.ts";

/** Which end of a queue a participant is. */
export type EndKind = "sender" | "receiver";

/** Queue geometry chosen by the creator. */
export interface Geometry {
  capacity: number;
  arenaBytes: number;
  byteBudget: number;
  keepIdleSegmentsMs: number;
}

/** A reservation waiting for room for a new extension segment (see SharedQueue.usage). */
export interface ShmWait {
  /** Bytes of the segment. */
  size: number;
  /** The room there was for it, in /dev/shm or in memory. */
  free: number;
  /** What set that room (see segmentRoom). */
  setBy: SegmentRoom["setBy"];
}

/** A slot reserved by a sender: where to write the message. */
export interface Reservation {
  readonly slot: number;
  readonly segment: number;
  readonly offset: number;
  readonly length: number;
  /** True when the extension segment must be made (or remade) before writing. */
  readonly createExtension: boolean;
}

/** A message handed to this receiver. */
export interface TakenMessage {
  readonly slot: number;
  readonly segment: number;
  readonly offset: number;
  readonly length: number;
  /** L.W_RECEIVER_EPOCH at the take, when its taker was then the only receiver; else -1. For
   * a message taken ahead, the take is its hand-out (see #handOutPrefetched). */
  aloneAt: number;
}

const INT_MAX = 0x7fffffff;

/** Whether a slot in `state` holds a message that is out: published, and not yet released. */
function isOut(state: number): boolean {
  return state === L.SlotState.Ready || state === L.SlotState.Taken ||
    state === L.SlotState.Prefetched || state === L.SlotState.Claimed ||
    state === L.SlotState.Held || state === L.SlotState.Returned;
}

/** Whether a slot in `state` holds a published message that no receiver has taken for a caller
 * yet: ready, taken ahead (`Prefetched`), or given back without the lock (`Returned`). */
function isWaiting(state: number): boolean {
  return state === L.SlotState.Ready || state === L.SlotState.Prefetched ||
    state === L.SlotState.Returned;
}

/** Whether a slot in `state` was let go of without the lock, released or withdrawn, and waits
 * for a settle (counted in L.W_UNSETTLED). */
function isUnsettled(state: number): boolean {
  return state === L.SlotState.Released || state === L.SlotState.Withdrawn;
}

/** Thrown inside SharedQueue.create when a sweep removed the new queue's name before its maker
 * held it: the process stood still (stopped, frozen) for the sweep's grace between the two,
 * and the sweep rightly took the queue for a dead maker's. No peer could open it: the queue is
 * made afresh under a new name. */
const SWEPT_WHILE_MADE = Symbol("swept while made");
/** Messages above this share of the arena go to an extension segment. */
const ARENA_SHARE = 4;
/** Extensions of one size class whose messages wait in line before a sender waits for one to
 * come back instead of making another: it fills one while receivers copy out of the others. */
const EXTENSIONS_IN_FLIGHT = 3;
/** Bytes per millisecond a new extension is made (created and pre-faulted) at here: about
 * 1 GB/s. A sender waits for a busy one at most as long as making one would take. */
const EXTENSION_MAKE_BYTES_PER_MS = 1e6;
/** How often, at most, wakes that find no waiter reap the dead (see #wakeAnnounced). */
const IDLE_WAKE_REAP_MS = 250;
/** How often an end with extensions mapped looks for idle ones to drop or unmap, at most
 * (see #tickIdleExtensions), and at least: half the time they are kept, within these. An end
 * with none mapped looks every IDLE_TICK_MS. */
const IDLE_TICK_MS = 1_000;
const MIN_IDLE_TICK_MS = 50;
/** A budget claim not renewed for this long is void (see L.C_CLAIM_BYTES): its put renews it
 * at every attempt, at least every room wait slice (ROOM_SLICE_MS). */
const CLAIM_STALE_MS = 500;
/** A mask: every this + 1 reservations, a put checks for idle extensions to drop. */
const IDLE_CHECK_EVERY_PUTS = 63;
/** A call's timeout error blames the lock (see lockKeptWords) when a stopped holder kept it
 * past a deadline of this end this recently: a call gives up on the lock and times out within
 * a few ms. */
const LOCK_KEPT_WORDS_MS = 50;
/** Slots #queuedInExtensionsLocked looks at, at most. */
const QUEUED_SCAN_LIMIT = 4096;
/** Logical arena offsets are rebased before they get anywhere near 2^53. */
const ARENA_REBASE_AT = 2 ** 50;
/** A lone receiver takes up to this many more messages with the one asked for (see
 * #prefetchLocked)... */
const PREFETCH_MESSAGES = 16;
/** ...when each is at most this long: for larger ones the copy dwarfs the lock. */
const PREFETCH_MAX_BYTES = 64 * 1024;
/**
 * A lone sender reserves up to this many slots at once (see L.SlotState.Spare), its put's
 * slot and spares for the next: it then takes the lock once per run, not per put. On a
 * 2-vCPU AMD EPYC VM, a 100 B putSync in one thread 540 -> 450 ns; across two processes, a
 * receiver polling with getNowait 0.86 -> 1.08M msg/s, one blocking in getSync (which then
 * sets the pace) unchanged (medians of six runs each, taken in turn).
 */
export const RUN_SLOTS = 16;
/** ...for messages up to this long (encoded, aligned), whose lock costs much of their put... */
export const RUN_MAX_BYTES = 4096;
/** ...in queues of at least this capacity: a small one is a tight bound the user chose. */
export const RUN_MIN_CAPACITY = 8;
/** ...and a run's chunk takes at most this share of the arena. A second sender's arrival, or
 * the owner's death, gives its spares' slots back at once, but their arena room only as the
 * run's messages before them are released: it cannot know how far the owner, writing without
 * the lock, got. In a 64 KiB arena a run of 4000 B messages had taken it all, and a lease on
 * its first message left a second sender no room for 100 B. */
const RUN_ARENA_SHARE = 1 / 4;
/** What to do when /dev/shm has no room for the main segment. */
const ARENA_REMEDY = "lower the queue's arenaBytes";

/** An attachment of one queue end to the queue's shared memory. */
export class SharedQueue {
  readonly name: string;
  readonly kind: EndKind;
  readonly capacity: number;
  readonly arenaSize: number;
  readonly #byteBudget: number;
  /** See layout.C_KEEP_IDLE_MS. */
  readonly #keepIdleMs: number;
  /** While this end is open: the unref'd timer that drops idle extensions when they are due
   * and unmaps what other ends dropped (see #tickIdleExtensions). */
  #idleTimer: Timer | undefined;
  /** Whether that timer runs at the keep's pace (this end has a segment mapped), not 1 s. */
  #idleFast = false;
  /** Reservations made, counted for the checks for idle extensions from puts. */
  #reservations = 0;
  readonly #fd: number;
  readonly #main: Mapping;
  readonly #i32: Int32Array;
  readonly #u32: Uint32Array;
  readonly #f64: Float64Array;
  readonly #ringSize: number;
  readonly #mask: number;
  readonly #arenaOffset: number;
  readonly #putSeqPointer: Deno.PointerObject;
  readonly #releaseSeqPointer: Deno.PointerObject;
  readonly putSignal: FutexWord;
  readonly releaseSignal: FutexWord;
  /** The release sequence, for senders waiting for acks (announced apart: always woken). */
  readonly ackSignal: FutexWord;
  #self = -1;
  #selfGen = 0;
  #mutex!: ShmMutex;
  /** The participant table (see participants.ts). */
  readonly #participants: Participants;
  /** The consistency checks of the shared state (see audit.ts). */
  readonly #audit: Audit;
  /** The extension table (see extensions.ts). */
  readonly #extensionTable: ExtensionTable;
  /** This end's mappings of extension segments, and its views (see extension_mappings.ts). */
  readonly #mappings: ExtensionMappings;
  #closed = false;
  /** A release left senders waiting for room asleep: wake them before this end waits. */
  #wakeDeferred = false;
  /** The exit check's probe, in the table as no end (see removeAtExit). */
  #exitCheck = false;
  /** Closed by this thread's unload (see open_ends.ts track), not by the program: its calls say
   * so. */
  #closedAtExit = false;
  /** Whether this end counts in the exit sweeper's table (see exit_sweeper.ts). */
  #sweepCounted = false;
  /** peersDied when this end closed: its memory is unmapped then. */
  #peersDiedAtClose = 0;
  /** How this end's leaving is recorded when it closes (see leaveAsDead). */
  #leaveAs: "closed" | "died" = "closed";
  /** This end's close counted messages it held for a getMany batch received: the batch
   * returns them (see Receiver.#releaseBatch). */
  #heldReceivedAtClose = false;
  /** This end has marked itself the getMany holder (L.W_HOLDER) in a batch not yet ended. */
  #holding = false;
  /** In a take, the participant index of another receiver marked as the getMany holder, or
   * -1: its Taken messages hold back their senders' later ones, as its Held ones do. */
  #otherHolder = -1;
  /** C_EXTENSION_EPOCH when this end last unmapped its stale extensions. */
  #extensionEpoch = 0;
  /** Until when a reservation waits for a busy extension rather than make one (0: it does
   * not wait): see #waitForBusyLocked. */
  #waitForBusyUntil = 0;
  /** The last reservation waits for room for a new extension (see #chooseExtensionLocked). */
  #waitingForShm: ShmWait | undefined;
  /** The size of the extension whose room a collection was made for, while the reservations
   * of this end wait for it (0: none): made once, not at every retry (each a full collection,
   * maybe under the lock); a wait for another size collects anew. */
  #collectedForRoom = 0;
  /** The last reservation found every extension entry carrying a message in flight. */
  #waitingForExtension = false;
  /** This end dropped idle extension segments for a new one of `size` bytes, whose memory
   * comes back once every end has unmapped them: until `until`, the segment waits for that
   * (see #roomInShmLocked). */
  #shmWait: { size: number; until: number } | undefined;
  /** The size of the message that waited for other ends' drops (see #roomInShmLocked), until
   * the next reservation of an extension: once per message. */
  #shmWaitedForOthers = 0;
  /** When a wake that finds no waiter may reap the dead next (see #wakeAnnounced). */
  #nextIdleWakeReap = 0;
  /** Scratch of #takeLocked: which senders have a message still being written. */
  readonly #writing = new Uint8Array(L.MAX_PARTICIPANTS);
  #writingMarked = false;
  /** This sender's run: its Spare slots from ring position #runNext on, #runLeft of them,
   * and the part of the run's arena chunk still free (physical offsets, #runPos..#runEnd). */
  #runNext = 0;
  #runLeft = 0;
  #runPos = 0;
  #runEnd = 0;
  /** Room (in messages) worth waking senders for, when a receiver releases as it goes. */
  readonly #wakeBatch: number;
  /** Released slots this end settled in its current hold of the lock, not yet taken off the
   * unsettled count (see #uncountSettledLocked). Zero whenever this end does not hold the
   * lock: every release of the lock goes through #unlock, which takes them off. */
  #settledUncounted = 0;
  /** Messages this end took ahead (SlotState.Prefetched), handed out from #prefetchHead on. */
  readonly #prefetched: TakenMessage[] = [];
  #prefetchHead = 0;
  /** Set by #takeReadyLocked: the ring position it took, and whether that was the read
   * cursor's (in order). */
  #takenAt = 0;
  #takenInOrder = false;
  /** When {@linkcode reapIfDue} next looks for dead ends. */
  #nextReap = 0;
  /** When a stopped holder last kept the lock past a deadline of this end (see #lockBy). */
  #lockKeptAt = -Infinity;
  /** Async futex waits of this end in flight: their worker threads hold a pointer into the
   * main mapping, which close must not unmap under them. */
  #asyncWaits = 0;
  #unmapDeferred = false;

  private constructor(
    name: string,
    kind: EndKind,
    fd: number,
    main: Mapping,
    header: Header,
  ) {
    // The library is loaded now: the codec may stream large copies through it. Not before: a
    // program that only encodes or decodes, without --allow-ffi, must not need it.
    useStreamingCopy(native.copyStreaming);
    this.name = name;
    this.kind = kind;
    this.#fd = fd;
    this.#main = main;
    this.#i32 = new Int32Array(main.buffer);
    this.#u32 = new Uint32Array(main.buffer);
    this.#f64 = new Float64Array(main.buffer);
    // The geometry as it was validated (or written), never read back: a peer that changed
    // the header since could give this end an arena larger than its mapping, over which it
    // makes raw views.
    this.capacity = header.capacity;
    this.#ringSize = header.ringSize;
    this.#mask = this.#ringSize - 1;
    this.#arenaOffset = header.arenaOffset;
    this.arenaSize = header.arenaSize;
    this.#byteBudget = header.byteBudget;
    this.#keepIdleMs = header.keepIdleMs;
    this.#putSeqPointer = Deno.UnsafePointer.offset(main.pointer, L.W_PUT_SEQ)!;
    this.#releaseSeqPointer = Deno.UnsafePointer.offset(main.pointer, L.W_RELEASE_SEQ)!;
    // Receivers wait on the put sequence for messages; senders on the release sequence for
    // space and acks.
    this.putSignal = {
      words: this.#i32,
      seq: L.W_PUT_SEQ >> 2,
      waiters: L.W_RECEIVERS_WAITING >> 2,
      share: L.P_WAITING,
      pointer: this.#putSeqPointer,
      spinMs: MIN_SPIN_MS,
    };
    this.releaseSignal = {
      words: this.#i32,
      seq: L.W_RELEASE_SEQ >> 2,
      waiters: L.W_SENDERS_WAITING >> 2,
      share: L.P_WAITING,
      pointer: this.#releaseSeqPointer,
      spinMs: MIN_SPIN_MS,
    };
    this.ackSignal = {
      ...this.releaseSignal,
      waiters: L.W_ACK_WAITING >> 2,
      share: L.P_ACK_WAITING,
    };
    this.#wakeBatch = Math.ceil(this.capacity / 4);
    this.#participants = new Participants(fd, main.buffer);
    this.#extensionTable = new ExtensionTable(name, main.buffer, header);
    this.#audit = new Audit(
      main.buffer,
      header.ringSize,
      header.arenaSize,
      this.#participants,
      this.#extensionTable,
    );
    this.#mappings = new ExtensionMappings(name, fd, main.size, this.#extensionTable);
  }

  /** Creates a queue and attaches to it as `kind`. */
  static create(geometry: Geometry, kind: EndKind): SharedQueue {
    const ringSize = L.ringSizeFor(geometry.capacity);
    const arenaOffset = L.arenaOffsetFor(ringSize);
    const arenaSize = L.alignUp(geometry.arenaBytes, L.PAGE_SIZE);
    const size = arenaOffset + arenaSize;
    const name = randomQueueName();
    ensureRoom(size, "a queue", ARENA_REMEDY);
    // Counted for the exit sweeper before the segment exists: a process killed while making it
    // (most of that goes into pre-faulting the arena) has its sweeper remove what it made.
    const counted = sweepOnExit(name);
    let fd: number;
    try {
      fd = native.shmCreate(name, size);
    } catch (error) {
      if (counted) noSweepOnExit(name);
      throw error;
    }
    let main: Mapping | undefined;
    try {
      // Holding the "alive" byte before the header is complete keeps sweepers away.
      holdAliveByte(fd, name);
      if (native.fdLinks(fd) === 0) throw SWEPT_WHILE_MADE;
      main = mapFd(fd, size);
      prefaultOrExplain(main.pointer, size, `queue ${name}`, ARENA_REMEDY);
      const header: Header = {
        capacity: geometry.capacity,
        ringSize,
        arenaOffset,
        arenaSize,
        byteBudget: Math.max(geometry.byteBudget, arenaSize),
        keepIdleMs: geometry.keepIdleSegmentsMs,
      };
      writeHeader(main, header);
      return SharedQueue.#join(name, kind, fd, main, header, counted);
    } catch (error) {
      native.closeFd(fd); // first: it forgets the mapping adopted with it
      if (main) unmapAll(main);
      // Unlinked first: a kill in between leaves nothing behind.
      if (error !== SWEPT_WHILE_MADE) native.shmUnlink(name, { missingOk: true });
      if (counted) noSweepOnExit(name);
      if (error === SWEPT_WHILE_MADE) return SharedQueue.create(geometry, kind);
      throw error;
    }
  }

  /**
   * On the main thread's way out: removes queue `name` if every end still in it belongs to
   * this process (they all end with it). It claims a participant entry for that, to take the
   * lock and be known alive while it holds it, but enters it as no end: a receiver joining
   * for a moment would move the receiver epoch (L.W_RECEIVER_EPOCH), and another process's
   * lone receiver would then hold nothing its getMany batch had taken before.
   */
  static removeAtExit(name: string): void {
    let queue: SharedQueue;
    try {
      queue = SharedQueue.#open(name, "receiver", true);
    } catch {
      return; // Gone already, full of ends, or unusable: nothing this exit can do.
    }
    queue.close();
  }

  /** Attaches to an existing queue by name as `kind`. */
  static open(name: string, kind: EndKind): SharedQueue {
    return SharedQueue.#open(name, kind, false);
  }

  /** {@linkcode open}, or, when `exitCheck`, the probe of {@linkcode removeAtExit}. */
  static #open(name: string, kind: EndKind, exitCheck: boolean): SharedQueue {
    let fd: number;
    try {
      fd = native.shmOpen(name);
    } catch (error) {
      if ((error as { code?: string }).code === "EPERM") {
        throw new ClosedError(
          `queue ${name} ${NOT_OWN_SEGMENT}`,
          { cause: error, reason: "corrupt" },
        );
      }
      if ((error as { code?: string }).code === "ENOENT") {
        // Never made here and long gone look alike: name both.
        const why = "every end of it has closed (or died), or its descriptor was made on " +
          "another machine or container, whose /dev/shm this one does not see";
        throw new ClosedError(`queue ${name} does not exist: ${why}`, {
          cause: error,
          reason: "gone",
        });
      }
      throw error;
    }
    const counted = sweepOnExit(name);
    let main: Mapping | undefined;
    try {
      holdAliveByte(fd, name);
      // Unlinked between open and lock: the last end closed, or a sweep found it dead.
      if (native.fdLinks(fd) === 0) throw goneError(name);
      const size = native.fdSize(fd);
      if (size < L.arenaOffsetFor(16)) {
        throw new ClosedError(`queue ${name} is not a valid queue (${size} bytes)`, {
          reason: "corrupt",
        });
      }
      main = mapFd(fd, size);
      const header = validateHeader(name, main, size);
      prefaultOrExplain(main.pointer, size, `queue ${name}`, ARENA_REMEDY);
      return SharedQueue.#join(name, kind, fd, main, header, counted, exitCheck);
    } catch (error) {
      native.closeFd(fd); // first: it forgets the mapping adopted with it
      if (main) unmapAll(main);
      if (counted) noSweepOnExit(name);
      throw error;
    }
  }

  /** Takes a participant entry in a mapped, valid queue, and tracks the end for exit (its
   * maker or opener counted it for the exit sweeper already). */
  static #join(
    name: string,
    kind: EndKind,
    fd: number,
    main: Mapping,
    header: Header,
    sweepCounted: boolean,
    exitCheck = false,
  ): SharedQueue {
    const queue = new SharedQueue(name, kind, fd, main, header);
    queue.#sweepCounted = sweepCounted;
    queue.#exitCheck = exitCheck;
    queue.#register();
    track(queue, SharedQueue.removeAtExit);
    queue.#watchIdleExtensions();
    return queue;
  }

  /** Closes this end as its thread unloads: later calls of the program's (from an unload
   * listener that runs after the library's) say why it is closed. */
  closeAtExit(): void {
    if (this.#closed) return;
    this.#closedAtExit = true;
    this.close();
  }

  /** Records this end's coming close as a death: its thread is being cut short. */
  leaveAsDead(): void {
    this.#leaveAs = "died";
  }

  /** Throws ClosedError once this end is closed, naming `method` (e.g. "Sender.put") when
   * given. */
  assertOpen(method?: string): void {
    if (!this.#closed) return;
    // A Worker dispatches no beforeunload (its unload comes of Deno.exit() alone).
    const remedy = isMainThread()
      ? "send a last message before the program ends, or from a beforeunload listener"
      : "send a last message before this Worker exits";
    const what = this.#closedAtExit
      ? `this ${this.kind} was closed as ${isMainThread() ? "the process" : "this Worker"} ` +
        "exits: the library closes every end still open from an unload listener of its own, " +
        `which runs before those added after the first queue end was made (${remedy})`
      : `this ${this.kind} is closed`;
    throw new ClosedError(method === undefined ? what : `${method}: ${what}`);
  }

  /** Whether this end was closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Ends of the other kind reaped as dead since the queue was made (no lock); once this end
   * is closed, the figure it last saw. */
  get peersDied(): number {
    if (this.#closed) return this.#peersDiedAtClose;
    return this.#u32[(this.kind === "sender" ? L.C_RECEIVERS_DIED : L.C_SENDERS_DIED) >> 2];
  }

  /** Live ends of the other kind, as last recorded (no lock). */
  get livePeers(): number {
    return this.#u32[(this.kind === "sender" ? L.C_LIVE_RECEIVERS : L.C_LIVE_SENDERS) >> 2];
  }

  /** Messages of this sender that receivers have released. */
  get acked(): number {
    return Atomics.load(this.#u32, (L.participantOffset(this.#self) + L.P_ACKED) >> 2);
  }

  /**
   * The ring positions of this sender's messages out now (published, not yet released): what
   * a `waitForAllAck` begun now waits for, and nothing put later. Read from the slots, not the
   * ack count, which a receiver killed between its release and its count leaves short.
   * Undefined when a stopped holder keeps the lock past the call's `deadline` (see #lockBy).
   */
  outOfSelf(deadline = Infinity): number[] | undefined {
    if (!this.#lockBy(deadline)) return undefined;
    try {
      this.#checkUsable();
      const u32 = this.#u32;
      const tail = u32[L.C_TAIL >> 2];
      const span = this.#slotsFrom(tail);
      const out: number[] = [];
      for (let k = 0; k < span; k++) {
        const at = (tail + k) >>> 0;
        const s = L.slotOffset(at & this.#mask);
        if (
          u32[(s + L.S_SENDER) >> 2] === this.#self &&
          u32[(s + L.S_SENDER_GEN) >> 2] === this.#selfGen &&
          isOut(Atomics.load(this.#i32, (s + L.S_STATE) >> 2))
        ) out.push(at);
      }
      return out;
    } finally {
      this.#unlock();
    }
  }

  /**
   * Whether the message at ring position `at` (from {@linkcode outOfSelf}) is still out. No
   * lock: until the tail passes `at` its slot is that message's, whose state, once released,
   * never goes back; a slot reused since the read of the tail says "out" at worst, and is
   * looked at again.
   */
  isOut(at: number): boolean {
    if (((at - this.#u32[L.C_TAIL >> 2]) | 0) < 0) return false;
    return isOut(Atomics.load(this.#i32, (L.slotOffset(at & this.#mask) + L.S_STATE) >> 2));
  }

  /** Messages put and not yet released, as last recorded (no lock), less this sender's
   * spares (see L.SlotState.Spare), which count in flight until used. */
  get inFlight(): number {
    return Math.max(this.#u32[L.C_IN_FLIGHT >> 2] - this.#sparesHeld(), 0);
  }

  /**
   * Whether every slot of the ring is in use (no lock): slots are reclaimed in order, so a
   * message held at the tail (a lease, an unsent draft) stops puts once the ring's other
   * slots have been put behind it, even with capacity to spare.
   */
  get ringFull(): boolean {
    const u32 = this.#u32;
    // The tail first: read after the write cursor, a tail that moved on meanwhile could pass
    // it, and the difference wrap around to "full".
    const tail = u32[L.C_TAIL >> 2];
    // Spares are slots a sender has at hand (see #sparesHeld).
    return ((u32[L.C_WRITE >> 2] - tail) >>> 0) - this.#sparesHeld() >= this.#ringSize;
  }

  /** Slots in the ring: twice the capacity, at least 16 (see layout.ringSizeFor). */
  get ringSize(): number {
    return this.#ringSize;
  }

  /** What holds the queue's room right now (no lock; for error messages). */
  usage(): {
    inFlight: number;
    extensionBytes: number;
    byteBudget: number;
    arenaHeld: number;
    claimedByOthers: number;
    waitingForShm: ShmWait | undefined;
    waitingForExtension: boolean;
  } {
    const extensionBytes = this.#extensionTable.bytes(true);
    // Read without the lock: a figure for messages, not for decisions.
    const arenaHeld = this.#f64[L.C_ARENA_HEAD >> 3] - this.#f64[L.C_ARENA_TAIL >> 3];
    const claimedByOthers = this.#budgetClaimedByOthers();
    return {
      inFlight: this.inFlight,
      extensionBytes,
      byteBudget: this.#byteBudget,
      arenaHeld,
      claimedByOthers,
      waitingForShm: this.#waitingForShm,
      waitingForExtension: this.#waitingForExtension,
    };
  }

  /**
   * A snapshot of the queue for {@linkcode QueueStats}, under the lock: releases are settled
   * first, so the totals only grow from one snapshot to the next. A monitor must not hang on
   * a stopped peer, so the lock is waited for briefly only: past that, the figures are read
   * without it (their counters move only under the lock, so they still agree, but for one
   * that a slow holder changes meanwhile).
   */
  stats(): QueueStats {
    // The dead are counted once noticed: a queue only watched must be looked at too.
    this.reapIfDue(NO_WAIT);
    const locked = this.#lockBy(NO_WAIT);
    try {
      this.#checkUsable();
      if (locked) this.#settleLocked(true);
      const u32 = this.#u32;
      const i32 = this.#i32;
      const f64 = this.#f64;
      const tail = u32[L.C_TAIL >> 2];
      const span = this.#slotsFrom(tail);
      let waiting = 0;
      let writing = 0;
      let spares = 0;
      let withdrawn = 0;
      let bytesInUse = 0;
      for (let k = 0; k < span; k++) {
        const s = L.slotOffset((tail + k) & this.#mask);
        // Read once: receivers hand out and release messages without the lock meanwhile.
        const state = Atomics.load(i32, (s + L.S_STATE) >> 2);
        if (state === L.SlotState.Writing) writing++;
        else if (state === L.SlotState.Spare) {
          spares++;
          continue;
        } else if (state === L.SlotState.Withdrawn) {
          withdrawn++;
          continue;
        } else if (isWaiting(state)) waiting++;
        else if (
          state !== L.SlotState.Taken && state !== L.SlotState.Claimed &&
          state !== L.SlotState.Held
        ) continue;
        const segment = u32[(s + L.S_SEGMENT) >> 2];
        if (segment === 0) bytesInUse += L.alignUp(f64[(s + L.S_LENGTH) >> 3], L.MESSAGE_ALIGN);
        else if (segment <= L.MAX_EXTENSIONS) {
          bytesInUse += this.#extensionTable.size(segment - 1);
        }
      }
      // Spares are room the lone sender keeps at hand, not messages; nor is a withdrawn draft,
      // which only a settle (not possible without the lock) takes off the count.
      const inFlight = Math.max(u32[L.C_IN_FLIGHT >> 2] - spares - withdrawn, 0);
      const received = f64[L.C_TOTAL_RELEASED >> 3];
      const sender = this.kind === "sender";
      const died = this.peersDied;
      const ownDied = u32[(sender ? L.C_SENDERS_DIED : L.C_RECEIVERS_DIED) >> 2];
      return {
        waiting,
        inFlight,
        capacity: this.capacity,
        // Published: a message being written is not yet, one cancelled never was, and one
        // released since the settle above is still in flight.
        put: received + Math.max(inFlight - writing, 0),
        received,
        bytesInUse,
        byteBudget: this.#byteBudget,
        sharedBytes: this.#main.bytes.length + this.#extensionTable.bytes(false),
        senders: u32[L.C_LIVE_SENDERS >> 2],
        receivers: u32[L.C_LIVE_RECEIVERS >> 2],
        sendersDied: sender ? ownDied : died,
        receiversDied: sender ? died : ownDied,
      };
    } finally {
      if (locked) this.#unlock();
    }
  }

  /** Slots from ring position `tail` up to the write cursor: never more than the ring, so a
   * scan stays in it whatever the cursors say (a corrupt one is found by the audit). */
  #slotsFrom(tail: number): number {
    return Math.min((this.#u32[L.C_WRITE >> 2] - tail) >>> 0, this.#ringSize);
  }

  /** Whether a message of `length` encoded bytes goes to the arena (else an extension). */
  fitsArena(length: number): boolean {
    return length <= this.largestArenaMessage;
  }

  /** Messages (encoded) up to this size go in the arena, larger ones in extensions. */
  get largestArenaMessage(): number {
    return this.arenaSize / ARENA_SHARE;
  }

  // ---------------------------------------------------------------- sender side

  /**
   * Reserves a slot and `length` bytes for a message, or returns undefined when the queue is
   * full, or when a stopped holder keeps the lock past the call's `deadline`. Throws ClosedError
   * when no receiver is left.
   */
  reserve(
    length: number,
    deadline = Infinity,
    holdsDrafts = false,
    mayRun = false,
  ): Reservation | undefined {
    if (this.#runLeft !== 0 && mayRun) {
      const spare = this.#reserveSpare(length);
      if (spare !== undefined) return spare;
    }
    if (!this.#lockBy(deadline)) return undefined;
    try {
      this.#checkUsable();
      this.#assertReceiversLocked();
      if (this.#runLeft !== 0) this.#dropRunLocked();
      const reservation = this.#reserveLocked(length, deadline, holdsDrafts, mayRun);
      this.#noticeRenewedExtensionsLocked();
      return reservation;
    } finally {
      this.#unlock();
    }
  }

  /**
   * Reserves consecutive arena messages in one critical section: for `lengths[from]` on, in
   * order, as many as there is room for, pushed onto `into`. Stops at the first that finds no
   * room or does not fit the arena (those go one at a time, through {@linkcode reserve}), and
   * reserves none when a stopped holder keeps the lock past `deadline`. Throws ClosedError when
   * no receiver is left.
   */
  reserveMany(
    lengths: readonly number[],
    from: number,
    into: Reservation[],
    deadline = Infinity,
  ): void {
    if (!this.#lockBy(deadline)) return;
    try {
      this.#checkUsable();
      this.#assertReceiversLocked();
      if (this.#runLeft !== 0) this.#dropRunLocked();
      for (let i = from; i < lengths.length && this.fitsArena(lengths[i]); i++) {
        const reservation = this.#reserveLocked(lengths[i]);
        if (reservation === undefined) break;
        into.push(reservation);
      }
      this.#noticeRenewedExtensionsLocked();
    } finally {
      this.#unlock();
    }
  }

  /**
   * Takes the next Spare slot of this sender's run for a message of `length` bytes, without
   * the lock; undefined when the run cannot serve it (the message does not fit what is left
   * of the chunk, a lock holder cancelled the spare, no receiver is left, or the queue is
   * unusable): then the locked path decides, or reports what went wrong.
   */
  #reserveSpare(length: number): Reservation | undefined {
    const u32 = this.#u32;
    const need = L.arenaBytes(length);
    if (
      this.#closed || this.#runPos + need > this.#runEnd ||
      u32[L.H_STATE >> 2] !== L.QueueState.Ready || u32[L.C_LIVE_RECEIVERS >> 2] === 0
    ) return undefined;
    const slot = this.#runNext & this.#mask;
    const s = L.slotOffset(slot);
    if (
      u32[(s + L.S_SENDER) >> 2] !== this.#self ||
      u32[(s + L.S_SENDER_GEN) >> 2] !== this.#selfGen ||
      Atomics.compareExchange(
          this.#i32,
          (s + L.S_STATE) >> 2,
          L.SlotState.Spare,
          L.SlotState.Writing,
        ) !== L.SlotState.Spare
    ) {
      // Cancelled, and so is the rest of the run (see L.SlotState.Spare).
      this.#runLeft = 0;
      return undefined;
    }
    this.#runNext = (this.#runNext + 1) >>> 0;
    this.#runLeft--;
    const offset = this.#runPos;
    this.#runPos += need;
    this.#f64[(s + L.S_OFFSET) >> 3] = offset;
    this.#f64[(s + L.S_LENGTH) >> 3] = length;
    return { slot, segment: 0, offset, length, createExtension: false };
  }

  /** Gives back what is left of this sender's run: its spares' slots, capacity and arena
   * room (see #rewindSparesLocked). */
  #dropRunLocked(): void {
    const left = this.#sparesHeld();
    this.#runLeft = 0;
    if (left === 0) return;
    const rewound = this.#rewindSparesLocked(left, this.#runEnd - this.#runPos);
    if (rewound < left) this.#cancelSparesLocked(); // not at the ring's end: a forged cursor
    this.#reclaimLocked();
  }

  /** Whether the ring ends in a Spare slot of sender `index` (generation `gen`). */
  #endsInSparesOf(index: number, gen: number): boolean {
    const u32 = this.#u32;
    if (u32[L.C_WRITE >> 2] === u32[L.C_TAIL >> 2]) return false;
    const s = L.slotOffset((u32[L.C_WRITE >> 2] - 1) & this.#mask);
    return Atomics.load(this.#i32, (s + L.S_STATE) >> 2) === L.SlotState.Spare &&
      u32[(s + L.S_SENDER) >> 2] === index && u32[(s + L.S_SENDER_GEN) >> 2] === gen;
  }

  /** Gives back every sender's spares: a second sender joined, and runs are for a lone one. */
  #dropAllSparesLocked(): void {
    this.#rewindSparesLocked();
    this.#cancelSparesLocked();
    this.#reclaimLocked();
  }

  /**
   * Takes back the Spare slots at the end of the ring, where a lone sender's run always ends:
   * they leave the ring (Done, then past the write cursor, then Free, so that a holder killed
   * in between leaves what recovery repairs), and their ring slots and capacity serve the next
   * messages at once, not once the run's messages before them are released. The chunk's end
   * moves onto the slot now last. Given `count`, the spares the run's owner holds, and
   * `unused`, the bytes of the chunk it had left for them, the arena head comes back too when
   * all of them went (a lock holder that is not the owner cannot know how far the owner,
   * writing without the lock, got). Returns how many it took back.
   */
  #rewindSparesLocked(count = -1, unused = 0): number {
    const u32 = this.#u32;
    const f64 = this.#f64;
    const tail = u32[L.C_TAIL >> 2];
    let write = u32[L.C_WRITE >> 2];
    let chunkEnd = -1;
    let n = 0;
    while (write !== tail && (write - tail) >>> 0 <= this.#ringSize) {
      const slot = (write - 1) & this.#mask;
      const s = L.slotOffset(slot);
      if (!this.#doneLocked(slot, L.SlotState.Spare)) break;
      if (n++ === 0) chunkEnd = f64[(s + L.S_ARENA_END) >> 3];
      write = (write - 1) >>> 0;
      u32[L.C_WRITE >> 2] = write;
      Atomics.store(this.#i32, (s + L.S_STATE) >> 2, L.SlotState.Free);
    }
    if (n === 0) return 0;
    let end = chunkEnd;
    if (n === count && chunkEnd === f64[L.C_ARENA_HEAD >> 3] && unused > 0) {
      end = chunkEnd - unused;
      f64[L.C_ARENA_HEAD >> 3] = end;
    }
    if (write !== tail) {
      const s = L.slotOffset((write - 1) & this.#mask);
      if (
        u32[(s + L.S_RUN) >> 2] !== 0 && u32[(s + L.S_SEGMENT) >> 2] === 0 &&
        Atomics.load(this.#i32, (s + L.S_STATE) >> 2) !== L.SlotState.Free
      ) f64[(s + L.S_ARENA_END) >> 3] = end;
    }
    return n;
  }

  /** Cancels Spare slots wherever they are in the ring (Done: they go when reclaimed). None
   * is left once #rewindSparesLocked has run, unless the cursors were forged. */
  #cancelSparesLocked(): void {
    const tail = this.#u32[L.C_TAIL >> 2];
    const span = this.#slotsFrom(tail);
    for (let k = 0; k < span; k++) this.#doneLocked((tail + k) & this.#mask, L.SlotState.Spare);
  }

  /**
   * The spares counted in flight that are not messages: for a sender, those of its run it
   * still holds (none once a lock holder took them back: then the one it would take next is
   * no longer its Spare); for a receiver, every Spare slot, counted without the lock (for
   * error messages).
   */
  #sparesHeld(): number {
    const i32 = this.#i32;
    const u32 = this.#u32;
    if (this.kind === "sender") {
      if (this.#runLeft === 0) return 0;
      const s = L.slotOffset(this.#runNext & this.#mask);
      const held = Atomics.load(i32, (s + L.S_STATE) >> 2) === L.SlotState.Spare &&
        u32[(s + L.S_SENDER) >> 2] === this.#self &&
        u32[(s + L.S_SENDER_GEN) >> 2] === this.#selfGen;
      return held ? this.#runLeft : 0;
    }
    return this.#slotsIn((state) => state === L.SlotState.Spare);
  }

  /** How many slots from the tail up to the write cursor are in a state that `matches`; read
   * without the lock, a snapshot the holder's moves may already have changed. */
  #slotsIn(matches: (state: number) => boolean): number {
    const i32 = this.#i32;
    const tail = this.#u32[L.C_TAIL >> 2];
    const span = this.#slotsFrom(tail);
    let n = 0;
    for (let k = 0; k < span; k++) {
      const s = L.slotOffset((tail + k) & this.#mask);
      if (matches(Atomics.load(i32, (s + L.S_STATE) >> 2))) n++;
    }
    return n;
  }

  /**
   * How many spares to reserve past a message of `need` arena bytes at physical `offset`,
   * logical `start`: none unless this is the queue's only sender, the capacity is not tiny and
   * the message is small; else as many as the capacity, the ring and the arena have room for,
   * up to RUN_SLOTS - 1, each with `need` bytes of the chunk. The chunk never wraps around the
   * arena's end, so its messages lie at physical offsets from `offset` on.
   */
  #sparesLocked(
    need: number,
    inFlight: number,
    used: number,
    offset: number,
    start: number,
    arenaTail: number,
  ): number {
    if (
      need > RUN_MAX_BYTES || this.capacity < RUN_MIN_CAPACITY ||
      this.#u32[L.C_LIVE_SENDERS >> 2] !== 1
    ) return 0;
    const bytes = Math.min(
      this.arenaSize - offset,
      this.arenaSize - (start - arenaTail),
      Math.floor(this.arenaSize * RUN_ARENA_SHARE),
    ) - need;
    return Math.max(
      0,
      Math.min(
        RUN_SLOTS - 1,
        this.capacity - inFlight - 1,
        this.#ringSize - used - 1,
        Math.floor(bytes / need),
      ),
    );
  }

  /**
   * Makes the `spares` slots after ring position `write` this sender's run: Spare, sharing the
   * arena chunk that starts at logical `runStart` (physical `offset`) with the message at
   * `write`, which takes its first `need` bytes (see L.S_RUN).
   */
  #makeRunLocked(
    write: number,
    spares: number,
    offset: number,
    runStart: number,
    need: number,
  ): void {
    const u32 = this.#u32;
    const f64 = this.#f64;
    const chunkEnd = runStart + (spares + 1) * need;
    for (let i = 1; i <= spares; i++) {
      const slot = (write + i) & this.#mask;
      const s = L.slotOffset(slot);
      if (Atomics.load(this.#i32, (s + L.S_STATE) >> 2) !== L.SlotState.Free) {
        this.#poison(`slot ${slot} reserved twice`);
      }
      u32[(s + L.S_SENDER) >> 2] = this.#self;
      u32[(s + L.S_SENDER_GEN) >> 2] = this.#selfGen;
      u32[(s + L.S_TAKEN_BY) >> 2] = 0;
      u32[(s + L.S_SEGMENT) >> 2] = 0;
      u32[(s + L.S_RUN) >> 2] = 1;
      f64[(s + L.S_OFFSET) >> 3] = 0;
      f64[(s + L.S_LENGTH) >> 3] = 0;
      f64[(s + L.S_ARENA_END) >> 3] = i === spares ? chunkEnd : runStart + need;
      f64[(s + L.S_RUN_START) >> 3] = runStart + need;
      Atomics.store(this.#i32, (s + L.S_STATE) >> 2, L.SlotState.Spare);
    }
    this.#runNext = (write + 1) >>> 0;
    this.#runLeft = spares;
    this.#runPos = offset + need;
    this.#runEnd = offset + (spares + 1) * need;
  }

  /** Throws ClosedError when no receiver is left (which the participant table must agree
   * with, or the queue is corrupt). */
  #assertReceiversLocked(): void {
    if (this.#u32[L.C_LIVE_RECEIVERS >> 2] !== 0) return;
    this.#confirmNoneLeftLocked(L.ParticipantKind.Receiver);
    throw new ClosedError(this.goneMessage("receiver"), { reason: "no-receivers" });
  }

  /**
   * Makes reserved messages visible to receivers, in order, with one signal, and calls
   * `published` with how many it made visible: all of them, or, should one turn out dropped
   * (ClosedError, thrown on after the call), those before it, which receivers may take.
   */
  publishMany(reservations: readonly Reservation[], published: (count: number) => void): void {
    let count = 0;
    try {
      for (; count < reservations.length; count++) this.#publishState(reservations[count].slot);
    } finally {
      published(count);
      if (count > 0) this.#signal(this.putSignal);
    }
  }

  /** Makes a reserved message visible to receivers. */
  publish(reservation: Reservation): void {
    this.#publishState(reservation.slot);
    this.#signal(this.putSignal);
  }

  /**
   * Gives up a reservation: the message is never delivered and its space is freed. Behind a
   * stopped lock holder (SIGSTOP, a debugger), which would keep the call 10 s, the slot is
   * withdrawn without the lock instead (see L.SlotState.Withdrawn), for the next critical
   * section of any end to free. Throws as the lock does when a running holder keeps it past
   * the stuck limit: then the reservation is still the caller's, to cancel again or publish.
   */
  cancel(reservation: Reservation): void {
    if (this.#closed) return;
    if (!this.#lockBy(briefDeadline())) {
      this.#withdraw(reservation.slot);
      return;
    }
    try {
      this.#finishLocked(reservation.slot, L.SlotState.Writing);
      // A segment that could not be made (no room, no memory) leaves an idle entry that holds
      // nothing: empty it now, or `stats().sharedBytes` and the budget count its size until a
      // later put happens to look at it.
      const index = reservation.segment - 1;
      if (
        reservation.createExtension &&
        this.#extensionTable.state(index) === L.ExtensionState.Idle &&
        !this.#mappings.exists(index)
      ) this.#extensionTable.dropLocked(index);
    } finally {
      this.#unlock();
    }
    this.#signal(this.putSignal);
    this.#signal(this.releaseSignal);
  }

  /** Cancels this sender's reservation in slot `slot` without the lock (see {@linkcode cancel}).
   * A segment that could not be made then keeps its idle entry until a put reuses or trims it,
   * or it is dropped as idle. */
  #withdraw(slot: number): void {
    const s = L.slotOffset(slot);
    const u32 = this.#u32;
    // A reap that wrongly took this end for dead may have freed the slot, and another sender
    // reserved it since: then it is not this reservation's to withdraw.
    if (
      u32[(s + L.S_SENDER) >> 2] !== this.#self || u32[(s + L.S_SENDER_GEN) >> 2] !== this.#selfGen
    ) {
      return;
    }
    const at = (s + L.S_STATE) >> 2;
    if (
      Atomics.compareExchange(this.#i32, at, L.SlotState.Writing, L.SlotState.Withdrawn) !==
        L.SlotState.Writing
    ) return;
    Atomics.add(this.#i32, L.W_UNSETTLED >> 2, 1);
    // Receivers held back behind it may take this sender's later messages; senders, its room.
    this.#signal(this.putSignal);
    this.#signal(this.releaseSignal);
  }

  /** The bytes of a reservation, in the shared view (valid until this end closes). */
  reservedBytes(r: Reservation): Uint8Array {
    if (r.segment === 0) {
      const start = this.#arenaOffset + r.offset;
      return this.#main.bytes.subarray(start, start + r.length);
    }
    const use = r.createExtension ? "create" : "reserve";
    const mapping = this.#extension(r.segment - 1, use, r.offset + r.length);
    return mapping.bytes.subarray(r.offset, r.offset + r.length);
  }

  // ---------------------------------------------------------------- receiver side

  /**
   * Takes the next message, or returns undefined when none is ready, or when a stopped holder
   * keeps the lock past the deadline of the attempt running now ({@linkcode attemptDeadline}).
   * Throws ClosedError when the queue is drained and no sender is left.
   */
  take(): TakenMessage | undefined {
    if (this.#prefetchHead < this.#prefetched.length) {
      const ahead = this.#handOutPrefetched();
      if (ahead !== undefined) return ahead;
    }
    let taken: TakenMessage | undefined;
    if (!this.#lockBy(attemptDeadline())) return undefined;
    try {
      this.#checkUsable();
      taken = this.#takeLocked();
      if (taken !== undefined && this.#takenInOrder) this.#prefetchLocked(taken);
      this.#noticeRenewedExtensionsLocked();
    } finally {
      this.#unlock();
    }
    if (taken === undefined && this.#wakeDeferred) {
      this.#wakeDeferred = false;
      if (Atomics.load(this.#i32, L.W_SENDERS_WAITING >> 2) !== 0) {
        this.#wakeAnnounced(this.#releaseSeqPointer);
      }
    }
    return taken;
  }

  /** The bytes of a taken message, in the shared view. */
  messageBytes(m: TakenMessage): Uint8Array {
    if (m.segment === 0) {
      const start = this.#arenaOffset + m.offset;
      return this.#main.bytes.subarray(start, start + m.length);
    }
    const mapping = this.#extension(m.segment - 1, "read", m.offset + m.length);
    return mapping.bytes.subarray(m.offset, m.offset + m.length);
  }

  /**
   * A fresh ArrayBuffer over exactly the bytes of a message, for zero-copy views that can be
   * revoked on their own. Pair every call with {@linkcode dropView}.
   */
  openView(
    segment: number,
    offset: number,
    length: number,
    use: ExtensionUse = "read",
  ): MessageView {
    this.assertOpen();
    if (segment === 0) return this.#mappings.openArenaView(this.#arenaOffset + offset, length);
    const mapping = this.#extension(segment - 1, use, offset + length);
    return this.#mappings.openView(mapping, offset, length);
  }

  /** Revokes a view from {@linkcode openView}: its arrays read as empty afterwards. */
  dropView(view: MessageView): void {
    if (view.recycle !== undefined) {
      // A copy in a receiver's buffer: moving its memory to a new ArrayBuffer detaches every
      // view of the old one, and the memory serves the next small lease.
      if (!isDetached(view.buffer)) view.recycle(view.buffer.transfer(), view.used ?? 0);
      return;
    }
    const mapping = view.mapping;
    if (this.#closed || mapping === undefined) return; // Detached, and unmapped, with the end.
    this.#mappings.dropView(view.buffer, mapping);
  }

  /**
   * Releases a taken message without the lock: the slot becomes Released, and the next
   * critical section of any end settles it (its space and capacity come back, its sender
   * sees an ack). (Waking senders that turn out not to be there takes the lock now and then,
   * to reap the dead: see #wakeAnnounced.)
   *
   * `andTakeNext` says the caller goes on to take another message at once (a get loop). Then
   * senders waiting for room are woken only once a quarter of the capacity is free, or when
   * this end finds nothing more to take: a full queue with sleeping senders would otherwise
   * cost a wake-up syscall per message, and wake every sender for one free slot.
   */
  release(slot: number, andTakeNext = false): void {
    this.#releaseFrom(slot, L.SlotState.Taken, andTakeNext);
  }

  /**
   * Marks a message this end took, and copied out for a `getMany` batch not yet returned, as
   * held (L.SlotState.Held): should this end die before {@linkcode releaseHeld}, it goes back
   * to the queue. Only while this end is the queue's only receiver: a held message holds back
   * its sender's later ones from other receivers (see #takeReadyLocked), which would take
   * turns on a sender's stream; with others open it is released at once, as a get's. True
   * when held; false when released so, or counted received by a reap that wrongly took this
   * end for dead: either way the caller's.
   */
  hold(message: TakenMessage): boolean {
    if (this.#closed) return false;
    const { slot } = message;
    const s = L.slotOffset(slot);
    if (this.#u32[(s + L.S_TAKEN_BY) >> 2] !== this.#self) return false;
    // Alone from the take on, as seen once marked: a receiver that joins after this read of
    // the epoch sees the mark in its takes, and takes none of this sender's later messages
    // while this one is Taken or Held here; one that came (and maybe went) since the take
    // moved the epoch, and nothing is held.
    if (
      message.aloneAt >= 0 && this.#markHolder() &&
      Atomics.load(this.#u32, L.W_RECEIVER_EPOCH >> 2) === message.aloneAt
    ) {
      const at = (s + L.S_STATE) >> 2;
      return Atomics.compareExchange(this.#i32, at, L.SlotState.Taken, L.SlotState.Held) ===
        L.SlotState.Taken;
    }
    this.release(slot, true);
    return false;
  }

  /** Marks this end as the getMany holder (L.W_HOLDER); false when another receiver is
   * marked. A stale mark, naming no receiver, gives way. */
  #markHolder(): boolean {
    const i32 = this.#i32;
    const mark = this.#self + 1;
    let was = Atomics.compareExchange(i32, L.W_HOLDER >> 2, 0, mark);
    if (was !== 0 && was !== mark && !this.#namesReceiver(was)) {
      if (Atomics.compareExchange(i32, L.W_HOLDER >> 2, was, mark) === was) was = mark;
    }
    if (was !== 0 && was !== mark) return false;
    this.#holding = true;
    return true;
  }

  /** Whether holder mark `mark` (participant index + 1) names a receiver's entry, live or not
   * yet reaped. One that does not is stale (forged, or left by an end a wrongful reap had
   * freed): a holder's entry stays a receiver's until its removal, which clears its mark. */
  #namesReceiver(mark: number): boolean {
    const index = mark - 1;
    return index >= 0 && index < L.MAX_PARTICIPANTS &&
      this.#u32[(L.participantOffset(index) + L.P_KIND) >> 2] === L.ParticipantKind.Receiver;
  }

  /** Releases a message {@linkcode hold} held, as {@linkcode release} does; false when it went
   * back to the queue meanwhile (a reap that wrongly took this end for dead): another receiver
   * may have it now, so the caller must drop its copy. Call {@linkcode batchEnded} after the
   * batch's last. */
  releaseHeld(slot: number, andTakeNext: boolean): boolean {
    return this.#releaseFrom(slot, L.SlotState.Held, andTakeNext);
  }

  /** Whether this end's close counted messages it held for a getMany batch received (a close
   * from inside the batch's own call): the batch then returns them. */
  get heldReceivedAtClose(): boolean {
    return this.#heldReceivedAtClose;
  }

  /** After a getMany batch's held messages were released: the holder's mark goes, and
   * receivers that joined meanwhile, which skipped their senders' later messages (see
   * #takeReadyLocked) and may wait for a put that is not coming, can take those now. */
  batchEnded(): void {
    if (!this.#holding) return;
    this.#holding = false;
    // Closed without its removal (the lock out of reach): its memory is gone, and its mark
    // goes with its reap.
    if (this.#closed) return;
    Atomics.compareExchange(this.#i32, L.W_HOLDER >> 2, this.#self + 1, 0);
    if (this.#u32[L.C_LIVE_RECEIVERS >> 2] > 1) this.#signal(this.putSignal);
  }

  #releaseFrom(slot: number, from: number, andTakeNext: boolean): boolean {
    if (this.#closed) return false;
    const s = L.slotOffset(slot);
    // A slot no longer taken by this end was released already, by a reap that wrongly took
    // this end for dead: nothing to do.
    if (this.#u32[(s + L.S_TAKEN_BY) >> 2] !== this.#self) return false;
    const at = (s + L.S_STATE) >> 2;
    if (Atomics.compareExchange(this.#i32, at, from, L.SlotState.Released) !== from) return false;
    const i32 = this.#i32;
    const unsettled = Atomics.add(i32, L.W_UNSETTLED >> 2, 1) + 1;
    Atomics.add(i32, L.W_RELEASE_SEQ >> 2, 1);
    if (Atomics.load(i32, L.W_ACK_WAITING >> 2) === 0) {
      if (Atomics.load(i32, L.W_SENDERS_WAITING >> 2) === 0) return true;
      const room = this.capacity - (this.#u32[L.C_IN_FLIGHT >> 2] - Math.max(unsettled, 0));
      if (andTakeNext && room < this.#wakeBatch) {
        this.#wakeDeferred = true;
        return true;
      }
    }
    this.#wakeDeferred = false;
    this.#wakeAnnounced(this.#releaseSeqPointer);
    return true;
  }

  /**
   * Puts a message this end took, and never handed to its caller, back in line for any
   * receiver: the read cursor moves back to it. Later messages of its sender may have gone to
   * other receivers meanwhile; without this, the message would be lost. For an end about to
   * close: behind a stopped lock holder it marks the message for the next lock holder to put
   * back instead (see #leaveForRemoval), and returns.
   */
  giveBack(slot: number): void {
    if (this.#closed) return;
    const u32 = this.#u32;
    const s = L.slotOffset(slot);
    // Behind a stopped holder (or one past the stuck limit), a receiver's close would wait
    // 10 s here and then lose the message: it is left for the next lock holder instead.
    let locked = false;
    try {
      locked = this.#lockBy(briefDeadline());
    } finally {
      if (!locked) this.#leaveForRemoval(slot);
    }
    if (!locked) return;
    try {
      // Best effort: an unusable queue has nothing to give back to.
      if (u32[L.H_STATE >> 2] !== L.QueueState.Ready) return;
      const at = (s + L.S_STATE) >> 2;
      if (
        u32[(s + L.S_TAKEN_BY) >> 2] !== this.#self ||
        Atomics.load(this.#i32, at) !== L.SlotState.Taken
      ) {
        return;
      }
      // The cursor first: killed in between, this end leaves it on a slot still Taken, which
      // takes skip; a Ready slot behind the cursor would be lost for good.
      const tail = u32[L.C_TAIL >> 2];
      const k = (tail + ((slot - tail) & this.#mask)) >>> 0;
      if (((u32[L.C_READ >> 2] - tail) >>> 0) > ((k - tail) >>> 0)) u32[L.C_READ >> 2] = k;
      Atomics.store(this.#i32, at, L.SlotState.Ready);
    } finally {
      this.#unlock();
    }
    Atomics.add(this.#i32, L.W_PUT_SEQ >> 2, 1);
    native.futexWake(this.#putSeqPointer, INT_MAX);
  }

  /**
   * Without the lock, marks a message this end took, and never handed to its caller, for the
   * next lock holder to put back in line (see L.SlotState.Returned). Only for an end about to
   * close: it never hands the message out itself.
   */
  #leaveForRemoval(slot: number): void {
    const s = L.slotOffset(slot);
    if (this.#u32[(s + L.S_TAKEN_BY) >> 2] !== this.#self) return;
    const at = (s + L.S_STATE) >> 2;
    if (
      Atomics.compareExchange(this.#i32, at, L.SlotState.Taken, L.SlotState.Returned) ===
        L.SlotState.Taken
    ) Atomics.add(this.#i32, L.W_RETURNED >> 2, 1);
  }

  /**
   * Announces a waiter on `word` (+1), or takes it back (-1): the count peers wake for, and
   * this end's share of it, which the reap of this end takes back should it die waiting. An
   * end killed between the two writes leaves one count too many (a wake-up syscall each time,
   * never a missed wake), not one too few.
   */
  announceWaiter(word: FutexWord, delta: 1 | -1): void {
    const share = (L.participantOffset(this.#self) + word.share) >> 2;
    if (delta > 0) {
      const before = Atomics.add(word.words, word.waiters, 1);
      Atomics.add(this.#i32, share, 1);
      if (before < 0) this.#repairWaiterCount(word);
    } else {
      // Closed meanwhile (an async wait outlives its end): its close took them all back.
      if (this.#closed) return;
      // Only what is still this end's: a reap that took it for dead took its share back.
      for (;;) {
        const n = Atomics.load(this.#i32, share);
        if (n <= 0) return;
        if (Atomics.compareExchange(this.#i32, share, n, n - 1) === n) break;
      }
      Atomics.sub(word.words, word.waiters, 1);
    }
  }

  /**
   * Puts a waiter count found below 0 back to what the ends' entries announce. An
   * announcement adds to the count before the end's share and takes back from it after, and
   * a reap takes back no more than the count holds, so only a writer outside the library
   * makes one negative: one forged so (or forged to 0 under a sleeping waiter, which takes
   * itself back to -1) made the next announcement bring it to 0, and the next, so that no
   * put or release woke a waiter: each wait lasted its whole slice (up to 200 ms), for good.
   * The count is a hint, and one too high costs only wake-up syscalls: repaired, not poisoned.
   */
  #repairWaiterCount(word: FutexWord): void {
    const i32 = this.#i32;
    // An end waits on the words of its own kind: receivers for puts, senders for room, acks.
    const kind = this.kind === "sender" ? L.ParticipantKind.Sender : L.ParticipantKind.Receiver;
    for (;;) {
      const n = Atomics.load(i32, word.waiters);
      if (n > 0) return;
      let announced = 0;
      for (let i = 0; i < L.MAX_PARTICIPANTS; i++) {
        const at = L.participantOffset(i);
        if (this.#u32[(at + L.P_KIND) >> 2] !== kind) continue;
        announced += Math.min(Math.max(Atomics.load(i32, (at + word.share) >> 2), 0), 1 << 16);
      }
      // This end's own announcement at least, whatever its entry says.
      if (Atomics.compareExchange(i32, word.waiters, n, Math.max(announced, 1)) === n) return;
    }
  }

  /** Takes back the waiter announcements left in an entry: a dead end's, or a closing end's
   * whose async waits may never resume (its process or Worker ends first). */
  #takeBackWaitersLocked(at: number, kind: number): void {
    const i32 = this.#i32;
    const shares = kind === L.ParticipantKind.Receiver
      ? [[L.P_WAITING, L.W_RECEIVERS_WAITING]]
      : kind === L.ParticipantKind.Sender
      ? [[L.P_WAITING, L.W_SENDERS_WAITING], [L.P_ACK_WAITING, L.W_ACK_WAITING]]
      : [];
    for (const [share, count] of shares) {
      const n = Atomics.exchange(i32, (at + share) >> 2, 0);
      // No more than the count holds: a forged share must not hide live waiters.
      const back = Math.min(n, Atomics.load(i32, count >> 2));
      if (back > 0) Atomics.sub(i32, count >> 2, back);
    }
  }

  /** Settles released messages now, so `inFlight` and `acked` are current. Returns false when
   * a stopped holder keeps the lock past `deadline` (see {@linkcode #lockBy}), else true. */
  settle(deadline = Infinity): boolean {
    if (this.#closed) return true;
    if (!this.#lockBy(deadline)) return false;
    try {
      this.#checkUsable();
      this.#settleLocked();
    } finally {
      this.#unlock();
    }
    return true;
  }

  /** Whether messages were released since the last settle (no lock). */
  get unsettled(): boolean {
    return Atomics.load(this.#i32, L.W_UNSETTLED >> 2) > 0;
  }

  // ---------------------------------------------------------------- both sides

  /**
   * Frees the entries of participants that died, returning their messages and capacity.
   * Called when a wait times out, so a dead peer is noticed within a wait slice. `deadline`:
   * see {@linkcode settle}.
   */
  reapDead(deadline = Infinity): boolean {
    if (this.#closed) return true;
    if (!this.#lockBy(deadline)) return false;
    try {
      this.#checkUsable();
      this.#upkeepLocked(true);
    } finally {
      this.#unlock();
    }
    return true;
  }

  /**
   * {@linkcode reapDead}, at most once per REAP_EVERY_MS for this end, whichever of its calls
   * asks: a caller that only polls, or waits with timeouts shorter than that, must notice a
   * dead peer too, and no single call of it may last long enough to. Returns whether it ran
   * (`deadline`: see {@linkcode settle}).
   */
  reapIfDue(deadline = Infinity): boolean {
    return this.#reapDue() && this.reapDead(deadline);
  }

  /** Whether this end's next reap is due (see {@linkcode reapIfDue}); if so, it counts as done. */
  #reapDue(): boolean {
    const now = performance.now();
    if (now < this.#nextReap) return false;
    this.#nextReap = now + REAP_EVERY_MS;
    return true;
  }

  /**
   * What ends do now and then beside their calls: reap the dead, settle releases, drop the
   * extensions idle for long enough, unmap what was dropped. `thorough` (waits, polls) settles
   * every release and audits the counts; the idle timer, which runs whatever the ring's
   * size, settles only the releases counted.
   */
  #upkeepLocked(thorough: boolean): void {
    this.#reapDeadLocked();
    this.#restoreReturnedLocked();
    // Releases the count missed (a receiver killed between its CAS and its count) would
    // otherwise hold their room until the tail reaches them. Otherwise: a message released
    // without the lock leaves its extension busy until a settle.
    this.#settleLocked(thorough);
    if (thorough) this.#auditLocked();
    this.#extensionTable.dropIdleLocked();
    this.#mappings.unmapStale();
  }

  /**
   * Leaves the queue. The last end to leave unlinks every name of the queue. Behind a stopped
   * lock holder, or one that kept the lock past the stuck limit, it leaves without the lock:
   * its entry, marked as closed, waits for a reap.
   */
  close(): void {
    if (this.#closed) return;
    untrack(this);
    try {
      // A holder stopped (SIGSTOP, Ctrl-Z, a debugger) keeps the lock until resumed: this
      // end leaves without it, for a reap to remove, rather than wait the 10 s a live holder
      // is given. A holder that runs is waited for.
      if (this.#lockBy(briefDeadline())) this.#leaveLocked();
      else this.#leaveUnlocked();
    } catch {
      // A poisoned or stuck queue still lets this end go; the sweep removes leftovers.
      this.#leaveUnlocked();
    }
    this.#forgetPrefetched();
    this.#signal(this.putSignal, true);
    this.#signal(this.releaseSignal, true);
    this.#peersDiedAtClose = this.peersDied;
    this.#closed = true;
    clearInterval(this.#idleTimer);
    this.#idleTimer = undefined;
    this.#mappings.close();
    this.#participants.unclaim();
    if (this.#sweepCounted) noSweepOnExit(this.name);
    // Whatever a terminated Worker of this process left, of this queue or another, whether
    // or not shared memory still hints at it: this end may be the last here to notice.
    native.closeOrphans();
    // An async wait still in flight was woken above (its word moved, so one not yet asleep
    // returns at once); the last of them unmaps (see beginAsyncWait). Till then the fd stays
    // open, and the mapping recorded with it: should this thread end first (a Worker
    // terminated before its event loop ran again), both are an orphan's, which the next end
    // of any queue of this process to open or close takes away (no reap can: this end's
    // entry is gone); forgotten, they would stay mapped, and in /dev/shm, until the process
    // exits.
    if (this.#asyncWaits === 0) this.#unmap();
    else {
      this.#unmapDeferred = true;
      deferUnmap();
    }
  }

  /** Leaves with the lock taken, and lets it go. The last end to leave unlinks every name of
   * the queue. */
  #leaveLocked(): void {
    try {
      if (this.#u32[L.H_STATE >> 2] !== L.QueueState.Poisoned) this.#reapDeadLocked();
      // Its own run's slots and arena room, all of it: it knows how far it got.
      if (this.#runLeft !== 0 && this.#u32[L.H_STATE >> 2] === L.QueueState.Ready) {
        this.#dropRunLocked();
      }
      if (!this.#exitCheck) this.#removeParticipantLocked(this.#self, this.#leaveAs);
      // No orphan to look for here: this end closes its fd itself. Once the entry is free: an
      // end killed before its removal is a dead one, which the mark would have the reap count
      // as closed (its getMany messages counted received, not back in the queue).
      this.#participants.leavesNoOrphan();
      // By the table, not the counts: on a queue poisoned by a forged count, the last end
      // still removes it. Live ends only: one that left without the lock since this end's
      // reap (this end stopped in here meanwhile, a debugger's breakpoint) is gone all the same,
      // and no live end would be left to reap it and remove the queue.
      const last = this.#participants.countAlive(L.ParticipantKind.Sender) === 0 &&
        this.#participants.countAlive(L.ParticipantKind.Receiver) === 0;
      const left = last || !(this.#exitCheck || isMainThread())
        ? "none"
        : this.#participants.remainingEndsLocked();
      if (last || (this.#exitCheck && left !== "elsewhere")) this.#unlinkAllLocked();
      else if (left === "workers") leaveToThisProcess(this.name);
      if (last) noLongerLeftToThisProcess(this.name);
    } finally {
      this.#unlock();
    }
  }

  /**
   * Marks this end's entry as left by a close, for its reap (see Participants.leftByClose):
   * without it a closed sender would count as one that died (`sendersDied`: the stream cut
   * short). Not for an end that leaves as dead (its thread cut short, see leaveAsDead), nor
   * for one closed as its thread exits while it holds getMany messages: those go back to the
   * queue, as the reap of a dead end has them do. A close from inside a getMany batch
   * returns the messages it held: the reap counts them received.
   */
  #leaveUnlocked(): void {
    if (this.#leaveAs !== "closed" || this.#exitCheck || (this.#closedAtExit && this.#holding)) {
      return;
    }
    this.#participants.leavesNoOrphan();
    // Only if it still holds any: a reap that took this end for dead may have given them back
    // to the queue already, and a batch that returned those too would deliver them twice.
    if (this.#holding) this.#heldReceivedAtClose = this.#holdsHeldMessages();
  }

  /** Whether a message of the ring is Held by this end (see hold), looked for without the
   * lock: only this end, or the reap of its entry, moves one out of Held. */
  #holdsHeldMessages(): boolean {
    for (let slot = 0; slot < this.#ringSize; slot++) {
      const s = L.slotOffset(slot);
      if (
        Atomics.load(this.#i32, (s + L.S_STATE) >> 2) === L.SlotState.Held &&
        this.#u32[(s + L.S_TAKEN_BY) >> 2] === this.#self
      ) return true;
    }
    return false;
  }

  /** Closes the fd, then unmaps the main mapping: closing the fd first forgets the mapping
   * recorded with it (see native.adoptFd), which must never name memory that is gone. */
  #unmap(): void {
    native.closeFd(this.#fd);
    unmapAll(this.#main);
  }

  /**
   * Marks an async futex wait on a word of this end as started: until the matching
   * {@linkcode endAsyncWait}, the main mapping stays mapped even if the end closes, so the
   * wait's worker thread never reaches unmapped (or since reused) memory, and the waiter
   * count it announced can still be taken back. (Only a terminated Worker's wait may: its
   * memory is reclaimed as an orphan's while the call may still be out. The kernel then
   * reads the word of whatever is mapped there, or fails the call, and at worst sleeps a
   * slice on it: the call writes nothing.)
   */
  beginAsyncWait(): void {
    this.#asyncWaits++;
  }

  /** Marks an async wait as returned; the last one out unmaps a closed end's memory. */
  endAsyncWait(): void {
    if (--this.#asyncWaits === 0 && this.#unmapDeferred) {
      this.#unmapDeferred = false;
      try {
        this.#unmap();
      } finally {
        // Whatever the unmap met, a Worker's close must not wait for it in vain.
        deferredUnmapDone();
      }
    }
  }

  /**
   * Wakes every waiter on a word, e.g. to interrupt an async wait on abort. The word moves
   * too: a wait whose thread has not reached the kernel yet would miss the wake and sleep a
   * whole slice, but sees the word changed and returns at once. Other waiters just retry.
   */
  wakeAll(word: FutexWord): void {
    if (!this.#closed) this.#signal(word, true);
  }

  /**
   * For fault tests: runs the critical section of a put (sender) or a take (receiver) and
   * calls `inside` before leaving it, so a test can kill an end that holds the lock mid-way.
   * Returns false, without calling `inside`, when a take found nothing.
   */
  criticalSectionForTest(inside: () => void): boolean {
    this.#lock();
    try {
      this.#checkUsable();
      const got = this.kind === "sender" ? this.#reserveLocked(64) : this.#takeLocked();
      if (got === undefined) return false;
      inside();
      return true;
    } finally {
      this.#unlock();
    }
  }

  // ---------------------------------------------------------------- internals

  #lock(): void {
    this.assertOpen();
    this.#mutex.lock();
  }

  /**
   * Takes the lock for a call that gives up at `deadline`, and returns whether it did: not
   * when a stopped holder (SIGSTOP, a debugger) keeps it past the deadline, which would
   * otherwise hold the call for the 10 s of STUCK_MS; a holder that runs is waited for, as
   * by {@linkcode #lock} (Infinity). NO_WAIT: not when any live holder keeps it past
   * BRIEF_LOCK_MS.
   */
  #lockBy(deadline: number): boolean {
    if (deadline === Infinity) {
      this.#lock();
      return true;
    }
    this.assertOpen();
    if (deadline === NO_WAIT) return this.#mutex.lockWithin(BRIEF_LOCK_MS);
    if (this.#mutex.lockUnlessStopped(Math.max(deadline - performance.now(), 0))) {
      // Free again: a timeout from now on is no longer the stopped holder's doing.
      this.#lockKeptAt = -Infinity;
      return true;
    }
    this.#lockKeptAt = performance.now();
    return false;
  }

  /**
   * Words for the error of a call that timed out just after a stopped holder kept the lock
   * past its deadline: what it waited for may have been there all the while, and its other
   * words (no room, no message) would mislead. Undefined otherwise.
   */
  lockKeptWords(): string | undefined {
    if (performance.now() - this.#lockKeptAt > LOCK_KEPT_WORDS_MS) return undefined;
    return `the queue's lock was kept past this call's deadline by participant ` +
      `${this.#mutex.keptBy}, which is stopped (SIGSTOP, Ctrl-Z or a debugger), so it could ` +
      "not look";
  }

  #unlock(): void {
    if (this.#settledUncounted !== 0) this.#uncountSettledLocked();
    this.#mutex.unlock();
  }

  /**
   * Says that every end of `kind` left (`and` what else holds), and whether the last one
   * ended without closing: its process killed or crashed, a Worker that ended with it open, or
   * (a sender) its writable stream aborted or refused a chunk.
   */
  goneMessage(kind: EndKind, and = ""): string {
    const bit = kind === "sender" ? L.LAST_SENDER_DIED : L.LAST_RECEIVER_DIED;
    if ((this.#u32[L.C_LAST_LEFT_DEAD >> 2] & bit) === 0) {
      return `every ${kind} of the queue has closed${and === "" ? "" : ` ${and}`}`;
    }
    const how = kind === "sender"
      ? "its process killed or crashed, its Worker ended, or its writable stream cut short"
      : "its process killed or crashed, or its Worker ended";
    return `every ${kind} of the queue is gone, the last one ended without closing (${how})` +
      `${and === "" ? "" : `, ${and}`}`;
  }

  #checkUsable(): void {
    if (this.#u32[L.H_STATE >> 2] !== L.QueueState.Ready) {
      throw new ClosedError(`queue ${this.name} is unusable: its shared state was found corrupt`, {
        reason: "corrupt",
      });
    }
  }

  /** Marks the queue unusable for everyone and throws. */
  #poison(reason: string): never {
    this.#u32[L.H_STATE >> 2] = L.QueueState.Poisoned;
    Atomics.add(this.#i32, L.W_PUT_SEQ >> 2, 1);
    Atomics.add(this.#i32, L.W_RELEASE_SEQ >> 2, 1);
    native.futexWake(this.#putSeqPointer, INT_MAX);
    native.futexWake(this.#releaseSeqPointer, INT_MAX);
    throw new ClosedError(`queue ${this.name} is unusable: corrupt shared state (${reason})`, {
      reason: "corrupt",
    });
  }

  #signal(word: FutexWord, always = false): void {
    Atomics.add(word.words, word.seq, 1);
    if (always) native.futexWake(word.pointer, INT_MAX);
    else if (Atomics.load(word.words, word.waiters) !== 0) this.#wakeAnnounced(word.pointer);
  }

  /**
   * Wakes the waiters announced on a word. A wake that finds none, now and then, reaps the
   * dead: a waiter killed in its wait leaves its announcement behind until its entry is
   * reaped, and meanwhile every message pays this syscall; on a queue too busy for anyone to
   * wait out a slice, nobody else would reap it. Only if the lock comes within 2 ms
   * (NO_WAIT): the put or release this runs in must not wait on a stopped holder for a chore.
   */
  #wakeAnnounced(pointer: Deno.PointerObject): void {
    if (native.futexWake(pointer, INT_MAX) !== 0) return;
    const now = performance.now();
    if (now < this.#nextIdleWakeReap) return;
    this.#nextIdleWakeReap = now + IDLE_WAKE_REAP_MS;
    try {
      this.reapDead(NO_WAIT);
    } catch {
      // Whatever it found (a queue found corrupt) the next call reports; this one is done.
    }
  }

  /** Joins the participant table (see Participants.claim), reaping a dead end's entry first. */
  #register(): void {
    const index = this.#participants.claim(this.name);
    this.#self = index;
    native.adoptFd(this.#fd, this.#main);
    // What terminated Workers of this process left, of any queue: a process whose Workers
    // come and go, each with ends of its own, reclaims their memory as it opens new ones.
    // (Not in the periodic reaps: it reads /proc for every end of another thread.)
    native.closeOrphans();
    this.#mutex = new ShmMutex(
      this.#i32,
      L.W_LOCK,
      Deno.UnsafePointer.offset(this.#main.pointer, L.W_LOCK)!,
      index,
      {
        isAlive: (i) => this.#participants.isAlive(i),
        isStopped: (i) => this.#participants.isStopped(i),
        recover: (dead) => this.#recover(dead),
        stuckMs: stuckMsAtExit,
      },
    );
    this.#mutex.lock();
    try {
      this.#checkUsable();
      // The last end closes, and removes the queue's names, under this lock, finding itself
      // last by the participant table: an end opened but not in the table yet was not seen.
      if (native.fdLinks(this.#fd) === 0) throw goneError(this.name);
      if (this.#participants.taken(index)) {
        this.#removeParticipantLocked(index, this.#participants.claimedFrom ?? "died");
        // Set by that removal for "this end", but of the end before it.
        this.#heldReceivedAtClose = false;
      }
      // A mark left on this entry (by an end a wrongful reap had freed) is not this end's.
      Atomics.compareExchange(this.#i32, L.W_HOLDER >> 2, index + 1, 0);
      if (this.#exitCheck) return; // the exit check's entry stays free (see removeAtExit)
      this.#selfGen = this.#participants.enterLocked(
        this.kind === "sender" ? L.ParticipantKind.Sender : L.ParticipantKind.Receiver,
      );
      if (this.kind === "sender") this.#dropAllSparesLocked();
    } catch (error) {
      this.#participants.unclaim();
      throw error;
    } finally {
      this.#unlock();
    }
  }

  /** Runs with the lock taken over from a dead holder: repair, or poison if beyond repair. */
  #recover(_deadOwner: number): void {
    // A reclaim that empties the ring puts both arena cursors back to 0, in two stores: a
    // holder killed between them leaves them apart. With no message left, 0 is right for both.
    if (this.#u32[L.C_TAIL >> 2] === this.#u32[L.C_WRITE >> 2]) {
      this.#f64[L.C_ARENA_TAIL >> 3] = 0;
      this.#f64[L.C_ARENA_HEAD >> 3] = 0;
    }
    const problem = this.#audit.cursorProblem();
    if (problem !== undefined) this.#poison(problem);
    this.#finishCreditLocked();
    this.#recountLocked();
    this.#reapDeadLocked();
  }

  #reapDeadLocked(): void {
    let reaped = false;
    let orphans = false;
    for (let i = 0; i < L.MAX_PARTICIPANTS; i++) {
      if (i === this.#self) continue;
      if (this.#participants.taken(i)) {
        if (this.#participants.isAlive(i)) continue;
        this.#removeParticipantLocked(i, this.#participants.leftByClose(i) ? "closed" : "died");
        reaped = true;
      }
      // Reaped now, or earlier by another process, which cannot close our fds.
      if (this.#participants.leftAnOrphan(i)) orphans = true;
    }
    // Frees the lock bytes (and memory) the ended threads' ends still hold.
    if (orphans) native.closeOrphans(this.#fd);
    if (reaped) {
      Atomics.add(this.#i32, L.W_PUT_SEQ >> 2, 1);
      Atomics.add(this.#i32, L.W_RELEASE_SEQ >> 2, 1);
      native.futexWake(this.#putSeqPointer, INT_MAX);
      native.futexWake(this.#releaseSeqPointer, INT_MAX);
    }
  }

  /** Frees participant `index`'s entry: its unpublished messages are dropped, the messages
   * it held as a receiver are released, those it had prefetched, or copied into a getMany
   * batch not yet returned, go back to the queue. */
  #removeParticipantLocked(index: number, left: Leaving): void {
    const u32 = this.#u32;
    const at = L.participantOffset(index);
    const kind = u32[(at + L.P_KIND) >> 2];
    const gen = u32[(at + L.P_GEN) >> 2];
    // However it left: a closing end's own async waits still out take nothing back once it is
    // closed, and a dead one's never resume.
    this.#takeBackWaitersLocked(at, kind);
    this.#dropClaimLocked(index);
    // A lone sender's spares leave the ring, as at a second sender's arrival: their slots serve
    // at once, not once the run's messages before them are released.
    if (kind === L.ParticipantKind.Sender && this.#endsInSparesOf(index, gen)) {
      this.#rewindSparesLocked();
    }
    const mask = this.#mask;
    const tail = u32[L.C_TAIL >> 2];
    const write = u32[L.C_WRITE >> 2];
    const span = Math.min((write - tail) >>> 0, this.#ringSize);
    // Ring positions (from the tail) of the messages to put back in line: those it held for a
    // getMany batch, had taken ahead, or gave back without the lock.
    const back: number[] = [];
    const backFrom: number[] = [];
    for (let k = 0; k < span; k++) {
      const slot = (tail + k) & mask;
      const s = L.slotOffset(slot);
      const state = Atomics.load(this.#i32, (s + L.S_STATE) >> 2);
      if (
        kind === L.ParticipantKind.Receiver && state === L.SlotState.Held &&
        u32[(s + L.S_TAKEN_BY) >> 2] === index
      ) {
        // A close comes from the batch's own call (its allocate, a Worker's stop): the batch
        // still returns them, as received. A dead end's caller never saw them, nor does that
        // of one closed as its thread exits (Deno.exit() from inside the batch).
        if (left === "closed" && !(index === this.#self && this.#closedAtExit)) {
          this.#doneLocked(slot, L.SlotState.Held);
          if (index === this.#self) this.#heldReceivedAtClose = true;
        } else {
          back.push(k);
          backFrom.push(state);
        }
      } else if (
        kind === L.ParticipantKind.Sender &&
        (state === L.SlotState.Writing || state === L.SlotState.Spare) &&
        u32[(s + L.S_SENDER) >> 2] === index && u32[(s + L.S_SENDER_GEN) >> 2] === gen
      ) {
        this.#finishLocked(slot, state, false);
      } else if (
        kind === L.ParticipantKind.Receiver && state === L.SlotState.Taken &&
        u32[(s + L.S_TAKEN_BY) >> 2] === index
      ) {
        this.#finishLocked(slot, L.SlotState.Taken, false);
      } else if (
        kind === L.ParticipantKind.Receiver &&
        (state === L.SlotState.Prefetched || state === L.SlotState.Returned) &&
        u32[(s + L.S_TAKEN_BY) >> 2] === index
      ) {
        // Never handed to its caller: another receiver gets it, in its sender's order.
        back.push(k);
        backFrom.push(state);
      }
    }
    if (back.length > 0) {
      // The read cursor may have passed them (a getMany's messages, one given back without the
      // lock): it moves back first (killed in between, the slots are still as they were, and
      // the next reap redoes this); a Ready slot behind it would never be taken.
      if (((u32[L.C_READ >> 2] - tail) >>> 0) > back[0]) {
        u32[L.C_READ >> 2] = (tail + back[0]) >>> 0;
      }
      for (let i = 0; i < back.length; i++) {
        const at = (L.slotOffset((tail + back[i]) & mask) + L.S_STATE) >> 2;
        Atomics.compareExchange(this.#i32, at, backFrom[i], L.SlotState.Ready);
      }
    }
    // Its mark goes once nothing of it is Held or Taken any more (killed before this, the next
    // reap redoes it all).
    if (kind === L.ParticipantKind.Receiver) {
      Atomics.compareExchange(this.#i32, L.W_HOLDER >> 2, index + 1, 0);
      if (index === this.#self) this.#holding = false;
    }
    if (index === this.#self) this.#forgetPrefetched();
    this.#participants.freeLocked(index, kind, left);
    this.#reclaimLocked();
    // It may have died between a release (a receiver's) or a withdrawal (a sender's) and its
    // count: the slot's settle would then take another's unit, and that one would wait for a
    // scan of the whole ring.
    if (left !== "closed") this.#recountUnsettledLocked();
  }

  /**
   * Counts the ring's unsettled releases afresh. Receivers release without the lock, and count
   * a release after it: one counted while this scan runs, its slot passed already, must not be
   * lost to the result, so the result is added to the count as a difference (releases landing
   * meanwhile may count twice: a count ahead only costs a settle one scan of the ring).
   */
  #recountUnsettledLocked(): void {
    // Settles of this hold are in the ring already: they must not come off the result too.
    this.#uncountSettledLocked();
    const before = Atomics.load(this.#i32, L.W_UNSETTLED >> 2);
    const unsettled = this.#slotsIn(isUnsettled);
    Atomics.add(this.#i32, L.W_UNSETTLED >> 2, unsettled - before);
  }

  #reserveLocked(
    length: number,
    deadline = Infinity,
    holdsDrafts = false,
    mayRun = false,
  ): Reservation | undefined {
    // Settling reads and writes the slots receivers released, cache lines their cores hold:
    // while the queue is less than half full, a put into the arena leaves that to the
    // receivers' own takes (which settle too), and settles only should it find no room. Not
    // while an extension carries a message: settling its release lets this put drop it.
    // Measured on a 2-vCPU VM, two processes, six runs each taken in turn, median msg/s:
    // 100 B getSync 0.98 -> 1.26M, async get 0.97 -> 1.14M; 1 KiB 0.84 -> 0.86M (pooled
    // getSync 1.05 -> 1.16M).
    this.#reservations++;
    const lazy = this.fitsArena(length) && this.#u32[L.C_IN_FLIGHT >> 2] * 2 < this.capacity &&
      !this.#extensionTable.anyBusy;
    if (!lazy) this.#settleLocked();
    const reservation = this.#reserveNowLocked(length, deadline, holdsDrafts, mayRun);
    if (reservation !== undefined || !lazy) return reservation;
    this.#settleLocked();
    return this.#reserveNowLocked(length, deadline, holdsDrafts, mayRun);
  }

  /** {@linkcode #reserveLocked} with the releases settled as far as the caller wanted. */
  #reserveNowLocked(
    length: number,
    deadline: number,
    holdsDrafts: boolean,
    mayRun = false,
  ): Reservation | undefined {
    this.#waitingForShm = undefined; // set again below when this attempt waits for /dev/shm
    this.#waitingForExtension = false;
    const u32 = this.#u32;
    const f64 = this.#f64;
    const inFlight = u32[L.C_IN_FLIGHT >> 2];
    const tail = u32[L.C_TAIL >> 2];
    const write = u32[L.C_WRITE >> 2];
    if (inFlight >= this.capacity || ((write - tail) >>> 0) >= this.#ringSize) return undefined;
    const slot = write & this.#mask;
    const s = L.slotOffset(slot);
    if (Atomics.load(this.#i32, (s + L.S_STATE) >> 2) !== L.SlotState.Free) {
      this.#poison(`slot ${slot} reserved twice`);
    }
    let segment = 0;
    let offset = 0;
    let createExtension = false;
    const head = f64[L.C_ARENA_HEAD >> 3];
    let arenaEnd = head;
    let need = 0;
    let spares = 0;
    const arenaSize = this.arenaSize;
    // Past its budget, the queue drops the oversized segments left idle, unless this message
    // is oversized too and can reuse one: at any extension message (whoever left them), and at
    // an arena message once any end saw an extension go idle.
    const fitsArena = this.fitsArena(length);
    // An arena message takes no extension room: it fits the budget whatever its length (with
    // byteBudget equal to the arena, the room is 0 and no length is below it).
    const oversized = !fitsArena && length > this.#byteBudget - arenaSize;
    if ((u32[L.C_TRIM_DUE >> 2] !== 0 || !fitsArena) && !oversized) {
      u32[L.C_TRIM_DUE >> 2] = 0;
      this.#extensionTable.trimLocked();
    }
    // Ends in a loop of sync calls neither wait nor run timers: their puts look now and then.
    if ((this.#reservations & IDLE_CHECK_EVERY_PUTS) === 0) this.#extensionTable.dropIdleLocked();
    if (fitsArena) {
      // These cursors decide where this end writes (through raw pointers, for drafts): a
      // forged one must not send it outside the arena, nor keep it waiting for room forever.
      const arenaTail = f64[L.C_ARENA_TAIL >> 3];
      if (
        !(Number.isInteger(head) && head % L.MESSAGE_ALIGN === 0 && arenaTail >= 0 &&
          arenaTail <= head && head - arenaTail <= arenaSize && head < ARENA_CURSOR_LIMIT)
      ) {
        this.#poison(`arena cursors ${arenaTail}..${head}`);
      }
      // Nor past the oldest message, which a tail forged ahead would let it overwrite.
      const oldest = L.slotOffset(tail & this.#mask);
      if (write !== tail && u32[(oldest + L.S_SEGMENT) >> 2] === 0) {
        if (!(L.arenaStart(u32, f64, oldest) >= arenaTail)) {
          this.#poison(`arena tail ${arenaTail} past a message`);
        }
      }
      need = L.arenaBytes(length);
      const position = head % arenaSize;
      const start = position + need > arenaSize ? head + (arenaSize - position) : head;
      arenaEnd = start + need;
      if (arenaEnd - arenaTail > arenaSize) return undefined;
      offset = start % arenaSize;
      if (mayRun && !holdsDrafts) {
        spares = this.#sparesLocked(need, inFlight, (write - tail) >>> 0, offset, start, arenaTail);
      }
      f64[L.C_ARENA_HEAD >> 3] = arenaEnd + spares * need;
    } else {
      const choice = this.#chooseExtensionLocked(length, deadline, holdsDrafts);
      if (choice === undefined) return undefined;
      segment = choice.index + 1;
      createExtension = choice.create;
      // The message placed in it last must be done with: one still in flight there means its
      // state was forged idle or empty, and this one would be written over it.
      const last = this.#extensionTable.lastSlot(choice.index) & this.#mask;
      const lastState = Atomics.load(this.#i32, (L.slotOffset(last) + L.S_STATE) >> 2);
      if (
        lastState !== L.SlotState.Free && lastState !== L.SlotState.Done &&
        u32[(L.slotOffset(last) + L.S_SEGMENT) >> 2] === segment
      ) {
        this.#poison(`extension ${choice.index} handed out while slot ${last} has a message in it`);
      }
      this.#extensionTable.placeLocked(choice.index, slot);
    }
    u32[(s + L.S_SENDER) >> 2] = this.#self;
    u32[(s + L.S_SENDER_GEN) >> 2] = this.#selfGen;
    u32[(s + L.S_TAKEN_BY) >> 2] = 0;
    u32[(s + L.S_SEGMENT) >> 2] = segment;
    u32[(s + L.S_RUN) >> 2] = spares === 0 ? 0 : 1;
    f64[(s + L.S_OFFSET) >> 3] = offset;
    f64[(s + L.S_LENGTH) >> 3] = length;
    f64[(s + L.S_ARENA_END) >> 3] = arenaEnd;
    f64[(s + L.S_RUN_START) >> 3] = arenaEnd - need;
    Atomics.store(this.#i32, (s + L.S_STATE) >> 2, L.SlotState.Writing);
    if (spares !== 0) this.#makeRunLocked(write, spares, offset, arenaEnd - need, need);
    u32[L.C_WRITE >> 2] = (write + 1 + spares) >>> 0;
    u32[L.C_IN_FLIGHT >> 2] = inFlight + 1 + spares;
    return { slot, segment, offset, length, createExtension };
  }

  /**
   * Picks an extension for a message of `length` bytes: the smallest idle one that fits,
   * else a new one, dropping idle ones to stay within the byte budget. Returns undefined
   * (wait) when the budget is taken by messages in flight; a message larger than the whole
   * budget still goes when it is the only one. `holdsDrafts`: see #claimBudgetLocked.
   */
  #chooseExtensionLocked(
    length: number,
    deadline: number,
    holdsDrafts: boolean,
  ): { index: number; create: boolean } | undefined {
    const table = this.#extensionTable;
    const stateOf = (i: number) => table.state(i);
    const sizeOf = (i: number) => table.size(i);
    let fit = -1;
    let empty = -1;
    let busyBytes = 0;
    let busyFitting = 0;
    let heldBytes = 0;
    const idle: number[] = [];
    for (let i = 0; i < L.MAX_EXTENSIONS; i++) {
      const state = stateOf(i);
      if (state === L.ExtensionState.Empty) {
        if (empty < 0) empty = i;
        continue;
      }
      heldBytes += sizeOf(i);
      if (state === L.ExtensionState.Busy) {
        busyBytes += sizeOf(i);
        if (sizeOf(i) >= length) busyFitting++;
      } else {
        idle.push(i);
        if (sizeOf(i) >= length && (fit < 0 || sizeOf(i) < sizeOf(fit))) fit = i;
      }
    }
    const room = this.#byteBudget - this.arenaSize;
    // A sender that died (or failed) between reserving a new extension and making its segment
    // left the entry without one: it holds no memory, and is free for a new segment.
    if (fit >= 0 && !this.#mappings.exists(fit)) {
      heldBytes -= sizeOf(fit);
      idle.splice(idle.indexOf(fit), 1);
      table.dropLocked(fit);
      if (empty < 0 || fit < empty) empty = fit;
      fit = -1;
    }
    let index = fit;
    let create = false;
    // Not for a sender whose own drafts take budget: the claimant may be waiting for them,
    // and they cannot be sent while this put (or prepare) waits for the claimant.
    const claimed = holdsDrafts ? 0 : this.#budgetClaimedByOthersLocked();
    // Within the budget, and leaving the room another put waits for (a message past the whole
    // budget goes once it is the only one).
    const overBudget = (size: number) =>
      (busyBytes > 0 && busyBytes + size > room) ||
      (claimed > 0 && busyBytes + size + claimed > room);
    if (index >= 0) {
      if (overBudget(sizeOf(index))) {
        return this.#claimBudgetLocked(sizeOf(index), claimed, holdsDrafts);
      }
    } else {
      const size = extensionSizeFor(length);
      if (busyFitting >= EXTENSIONS_IN_FLIGHT && this.#waitForBusyLocked(length, size, deadline)) {
        return undefined;
      }
      if (overBudget(size)) return this.#claimBudgetLocked(size, claimed, holdsDrafts);
      // Largest idle ones go first: they hold the most memory.
      idle.sort((a, b) => sizeOf(b) - sizeOf(a));
      let dropped = 0;
      for (const i of idle) {
        if (heldBytes + size <= room && empty >= 0) break;
        heldBytes -= sizeOf(i);
        // Room to come in /dev/shm, unless an entry left without its segment.
        if (this.#mappings.exists(i)) dropped += sizeOf(i);
        table.dropLocked(i);
        if (empty < 0 || i < empty) empty = i;
      }
      if (empty < 0) {
        this.#waitingForExtension = true; // Every entry carries a message in flight.
        return undefined;
      }
      // /dev/shm, and the memory behind it, must hold the new segment too, and may be smaller
      // than the budget. (Memory short, segmentRoom collects first: under the lock, but only
      // then.)
      const writing = this.#extensionsBeingWrittenLocked();
      const newRoom = segmentRoom(size, this.#collectedForRoom !== size);
      if (newRoom.collected) this.#collectedForRoom = size;
      const free = Math.max(0, newRoom.bytes - table.unbackedBytesLocked(writing));
      if (size > free && this.#roomInShmLocked(size, free, dropped, writing) === "wait") {
        // For the error: what df (or the memory left) shows.
        this.#waitingForShm = { size, free: newRoom.bytes, setBy: newRoom.setBy };
        return undefined;
      }
      index = empty;
      table.newSegmentLocked(index, size);
      create = true;
    }
    table.busyLocked(index);
    this.#dropClaimLocked(this.#self);
    this.#waitForBusyUntil = 0;
    this.#shmWait = undefined;
    this.#shmWaitedForOthers = 0;
    this.#collectedForRoom = 0;
    return { index, create };
  }

  /**
   * For a new extension segment of `size` bytes that /dev/shm cannot hold now (`free` bytes
   * free, `droppedBefore` bytes of idle segments dropped for it already, for the byte budget):
   * whether the put is to wait for this queue's own segments to make the room, or never
   * gets it ("never": making the segment then fails with the sizes, see ensureRoom). Idle
   * segments are dropped for it, as many as it takes, and their memory comes back once every
   * end has unmapped them (at its next call, or wait slice), and so does the memory of those
   * other ends dropped in the last UNMAP_GRACE_MS; messages in flight come back when
   * released, except this end's own unsent drafts, which it would wait for in vain, and so do
   * segments other ends reserved and have not made yet (`free` already leaves out what those,
   * and segments made but not yet backed, will take). An idle entry left without a segment
   * (its maker failed or died) holds nothing, and goes.
   */
  #roomInShmLocked(
    size: number,
    free: number,
    droppedBefore: number,
    writing: ReadonlyMap<number, number>,
  ): "wait" | "never" {
    const table = this.#extensionTable;
    const sizeOf = (i: number) => table.size(i);
    let pending = 0;
    let inFlight = 0;
    let idleBytes = 0;
    const idle: number[] = [];
    for (let i = 0; i < L.MAX_EXTENSIONS; i++) {
      const state = table.state(i);
      if (state === L.ExtensionState.Empty) continue;
      if (state === L.ExtensionState.Idle) {
        if (!this.#mappings.exists(i)) {
          table.dropLocked(i);
          continue;
        }
        idle.push(i);
        idleBytes += sizeOf(i);
      } else if (!this.#mappings.exists(i, false)) {
        // Another end's reservation; else a failed one's leftover, which holds nothing.
        const by = writing.get(i);
        if (by !== undefined && by !== this.#self) pending += sizeOf(i);
      } else if (writing.get(i) !== this.#self) {
        inFlight += sizeOf(i);
      }
    }
    const now = performance.now();
    if (
      this.#shmWait !== undefined && (this.#shmWait.size !== size || this.#shmWait.until <= now)
    ) {
      this.#shmWait = undefined;
    }
    const available = free; // less what segments made or reserved will still take
    if (size <= available + droppedBefore + idleBytes) {
      idle.sort((a, b) => sizeOf(b) - sizeOf(a));
      let dropped = droppedBefore;
      for (const i of idle) {
        if (available + dropped >= size) break;
        dropped += sizeOf(i);
        table.dropLocked(i);
      }
      // Once: a window renewed at every drop could last as long as other messages come.
      this.#shmWait ??= { size, until: now + UNMAP_GRACE_MS };
      return "wait";
    }
    // Another end's reservation becomes a message in flight, and comes back as one.
    if (size <= available + idleBytes + inFlight + pending) return "wait";
    // What it dropped may still be mapped by an end that has not noticed yet.
    if (this.#shmWait !== undefined) return "wait";
    // So may what other ends dropped: for them, the window their last drop opened.
    const wallNow = Date.now();
    const droppedLately = table.droppedLatelyLocked(wallNow);
    if (
      droppedLately > 0 && this.#shmWaitedForOthers !== size &&
      size <= available + droppedLately + idleBytes + inFlight + pending
    ) {
      // Once: ends that keep dropping would otherwise hold this put until its deadline.
      this.#shmWaitedForOthers = size;
      const at = this.#f64[L.C_SHM_DROPPED_AT >> 3];
      this.#shmWait = { size, until: now + UNMAP_GRACE_MS - (wallNow - at) };
      return "wait";
    }
    return "never";
  }

  /**
   * Extension bytes another sender's put has claimed (see L.C_CLAIM_BYTES), or 0. A claim
   * that its sender stopped renewing, or whose sender left, is void, and cleared.
   */
  #budgetClaimedByOthersLocked(): number {
    const claim = this.#budgetClaim();
    if (claim === "void") this.#f64[L.C_CLAIM_BYTES >> 3] = 0;
    return typeof claim === "number" ? claim : 0;
  }

  /** Extension bytes another sender's put has claimed, or 0, read without changing anything
   * (nor the lock: for messages). */
  #budgetClaimedByOthers(): number {
    const claim = this.#budgetClaim();
    return typeof claim === "number" ? claim : 0;
  }

  /** The budget claim as this end sees it: another sender's live claim (its bytes), none or
   * this end's own ("none"), or one its sender stopped renewing or left ("void"). */
  #budgetClaim(): number | "none" | "void" {
    const u32 = this.#u32;
    const f64 = this.#f64;
    const bytes = f64[L.C_CLAIM_BYTES >> 3];
    if (!(bytes > 0)) return "none";
    const by = u32[L.C_CLAIM_BY >> 2];
    const gen = u32[L.C_CLAIM_GEN >> 2];
    if (by === this.#self && gen === this.#selfGen) return "none";
    const age = Date.now() - f64[L.C_CLAIM_AT >> 3];
    const at = by < L.MAX_PARTICIPANTS ? L.participantOffset(by) : -1;
    const live = age >= 0 && age < CLAIM_STALE_MS && at >= 0 &&
      u32[(at + L.P_KIND) >> 2] === L.ParticipantKind.Sender && u32[(at + L.P_GEN) >> 2] === gen;
    return live ? bytes : "void";
  }

  /**
   * A put waits for `size` bytes of the budget: it claims them, unless another put holds the
   * claim (`claimed` > 0), or renews its claim. `holdsDrafts`: this sender has unsent drafts
   * in extensions (Sender tracks them; a ring scan would cost every attempt under the lock).
   * Returns undefined (wait), for #chooseExtensionLocked.
   */
  #claimBudgetLocked(size: number, claimed: number, holdsDrafts: boolean): undefined {
    // Nor while this sender's own drafts take budget: they cannot drain while it waits, and
    // its claim would hold every other sender back.
    if (claimed > 0 || holdsDrafts) return undefined;
    const u32 = this.#u32;
    const f64 = this.#f64;
    f64[L.C_CLAIM_BYTES >> 3] = size;
    u32[L.C_CLAIM_BY >> 2] = this.#self;
    u32[L.C_CLAIM_GEN >> 2] = this.#selfGen;
    f64[L.C_CLAIM_AT >> 3] = Date.now();
    return undefined;
  }

  /**
   * Gives up this sender's budget claim, if it holds one: its put stopped waiting (got room,
   * timed out, aborted), and a claim left behind would hold other puts back until it went
   * stale. Never throws, and never waits long: on a queue it cannot lock within
   * BRIEF_LOCK_MS (a stopped peer keeps the lock, and a timed-out put must not wait for it),
   * the claim goes stale instead, within CLAIM_STALE_MS.
   */
  dropBudgetClaim(): void {
    if (
      this.#closed || this.#f64[L.C_CLAIM_BYTES >> 3] === 0 ||
      this.#u32[L.C_CLAIM_BY >> 2] !== this.#self
    ) return;
    try {
      if (!this.#lockBy(NO_WAIT)) return;
    } catch {
      return;
    }
    try {
      this.#dropClaimLocked(this.#self);
    } finally {
      this.#unlock();
    }
  }

  /** Clears the budget claim if participant `index` holds it. */
  #dropClaimLocked(index: number): void {
    if (this.#f64[L.C_CLAIM_BYTES >> 3] !== 0 && this.#u32[L.C_CLAIM_BY >> 2] === index) {
      this.#f64[L.C_CLAIM_BYTES >> 3] = 0;
    }
  }

  /**
   * Whether a sender about to make a new extension of `size` bytes should wait for a busy one
   * to come back instead. It should while enough messages of this size wait in line to keep
   * both sides busy: receivers hand those back soon, and waiting costs less than making (and
   * pre-faulting) another. Only so long as making one would take, though, only when that is
   * worth a wait slice, and only when the call can wait that long: `capacity` and the byte
   * budget are the limits, this is not. Messages held (leases, unsent drafts) do not count:
   * they may never come back while it waits, and a sender holding three drafts would wait on
   * itself.
   */
  #waitForBusyLocked(length: number, size: number, deadline: number): boolean {
    const makeMs = size / EXTENSION_MAKE_BYTES_PER_MS;
    if (makeMs < ROOM_SLICE_MS) return false;
    const now = performance.now();
    // Started at the first attempt that found the line full, ended by the next reservation
    // of an extension: a call that gave up (an abort) leaves its window to the next call,
    // whose own deadline is checked all the same.
    if (this.#waitForBusyUntil === 0) this.#waitForBusyUntil = now + makeMs;
    const left = this.#waitForBusyUntil - now;
    if (left <= 0 || deadline - now < left + ROOM_SLICE_MS) return false;
    return this.#queuedInExtensionsLocked(length) >= EXTENSIONS_IN_FLIGHT;
  }

  /** How many published messages not yet taken (or only taken ahead) sit in extensions of at
   * least `length` bytes, counting up to EXTENSIONS_IN_FLIGHT. Looks at a bounded stretch of
   * the ring after the read cursor: the lock is held meanwhile. */
  #queuedInExtensionsLocked(length: number): number {
    const u32 = this.#u32;
    const write = u32[L.C_WRITE >> 2];
    let queued = 0;
    let i = u32[L.C_READ >> 2];
    const limit = Math.min(this.#ringSize, QUEUED_SCAN_LIMIT);
    for (let n = 0; i !== write && n < limit; i = (i + 1) >>> 0, n++) {
      const s = L.slotOffset(i & this.#mask);
      const state = Atomics.load(this.#i32, (s + L.S_STATE) >> 2);
      if (!isWaiting(state)) continue;
      const segment = u32[(s + L.S_SEGMENT) >> 2];
      if (segment === 0 || segment > L.MAX_EXTENSIONS) continue;
      if (this.#extensionTable.size(segment - 1) < length) continue;
      if (++queued >= EXTENSIONS_IN_FLIGHT) break;
    }
    return queued;
  }

  /**
   * Runs every IDLE_TICK_MS (at most) while this end is open: an end that makes no call and
   * does not wait would otherwise keep a dropped segment mapped, and its memory taken, for
   * good. Never blocks: a lock held elsewhere is tried again next time.
   */
  #tickIdleExtensions(): void {
    if (this.#closed) {
      clearInterval(this.#idleTimer);
      this.#idleTimer = undefined;
      return;
    }
    // A segment no end has mapped (its writer and reader closed, or its writer died before
    // publishing, unnoticed until a reap) is reaped and dropped by whichever end ticks: every
    // end ticks while it is open. With nothing mapped here, only a segment in the table that
    // this tick could drop is worth the lock (none ever is with idle segments kept for good).
    if (
      !this.#mappings.anyMapped() &&
      (this.#keepIdleMs === Infinity || !this.#extensionTable.anyHeld())
    ) {
      if (this.#idleFast) this.#rearmIdleTimer(false);
      return;
    }
    if (!this.#mutex.tryLock()) return;
    try {
      if (this.#u32[L.H_STATE >> 2] !== L.QueueState.Ready) return;
      // The reap included: a Worker of this process terminate()d with an end open left its
      // mappings (of segments dropped here too) until an end reaps it.
      this.#upkeepLocked(false);
    } catch {
      // Only hints of shared memory were read: the next call of this end reports a fault.
    } finally {
      this.#unlock();
    }
  }

  /** Starts #tickIdleExtensions, from this end's join on: with idle segments kept forever too,
   * as others are still dropped for the budget, and this end must unmap them. */
  #watchIdleExtensions(fast = false): void {
    if (this.#idleTimer !== undefined && (this.#idleFast || !fast)) return;
    this.#rearmIdleTimer(fast);
  }

  /** (Re)starts the tick: at the keep's pace while this end has a segment mapped, else at
   * IDLE_TICK_MS (an end that never carries a large message wakes once a second, not 20). */
  #rearmIdleTimer(fast: boolean): void {
    clearInterval(this.#idleTimer);
    this.#idleFast = fast;
    const every = fast
      ? Math.min(Math.max(this.#keepIdleMs / 2, MIN_IDLE_TICK_MS), IDLE_TICK_MS)
      : IDLE_TICK_MS;
    this.#idleTimer = setInterval(() => this.#tickIdleExtensions(), every);
    Deno.unrefTimer(this.#idleTimer);
  }

  /** Maps extension `index` at its current generation, making the segment if asked (see
   * ExtensionMappings.map), and watches it for idleness. */
  #extension(index: number, use: ExtensionUse, needed: number): ExtensionMapping {
    const extension = this.#mappings.map(index, use, needed);
    this.#watchIdleExtensions(true);
    return extension;
  }

  /** The extensions that messages still being written (reserved, drafts) are in, each with
   * its sender's participant index. */
  #extensionsBeingWrittenLocked(): Map<number, number> {
    const u32 = this.#u32;
    const writing = new Map<number, number>();
    const tail = u32[L.C_TAIL >> 2];
    const span = this.#slotsFrom(tail);
    for (let k = 0; k < span; k++) {
      const s = L.slotOffset((tail + k) & this.#mask);
      const segment = u32[(s + L.S_SEGMENT) >> 2];
      if (
        segment > 0 && segment <= L.MAX_EXTENSIONS &&
        Atomics.load(this.#i32, (s + L.S_STATE) >> 2) === L.SlotState.Writing
      ) writing.set(segment - 1, u32[(s + L.S_SENDER) >> 2]);
    }
    return writing;
  }

  /**
   * Unmaps stale extensions once another end (or this one) dropped or replaced a segment: a
   * 1.7 GB message's segment, dropped at the next put, would otherwise stay in every end's
   * address space, and in RAM, until that end next waits. (The epoch is looked at here, at
   * every put and take: the mappings only when it moved.)
   */
  #noticeRenewedExtensionsLocked(): void {
    const epoch = this.#u32[L.C_EXTENSION_EPOCH >> 2];
    if (epoch === this.#extensionEpoch) return;
    this.#extensionEpoch = epoch;
    this.#mappings.unmapStale();
  }

  #publishState(slot: number): void {
    const at = (L.slotOffset(slot) + L.S_STATE) >> 2;
    if (
      Atomics.compareExchange(this.#i32, at, L.SlotState.Writing, L.SlotState.Ready) !==
        L.SlotState.Writing
    ) {
      throw new ClosedError(
        `queue ${this.name}: the message was dropped before it was published (slot ${slot})`,
      );
    }
  }

  /**
   * Hands out the oldest ready message. A message still being written (a draft, a large
   * copy in progress) holds back only later messages of its own sender: others are taken out
   * of turn, and the read cursor moves over them once the slow one is taken.
   */
  #takeLocked(): TakenMessage | undefined {
    this.#settleLocked();
    // A message given back without the lock goes before every later one of its sender.
    if (Atomics.load(this.#i32, L.W_RETURNED >> 2) !== 0) this.#restoreReturnedLocked();
    // A holder killed inside its batch holds back its senders' later messages until a reap
    // gives the batch back. A wait reaps when its slice runs out, but a receiver that finds
    // other senders' messages before that never does.
    if (
      this.#u32[L.C_LIVE_RECEIVERS >> 2] > 1 && this.#otherHolderLocked() >= 0 && this.#reapDue()
    ) {
      this.#upkeepLocked(true);
    }
    const u32 = this.#u32;
    const i32 = this.#i32;
    const mask = this.#mask;
    const write = u32[L.C_WRITE >> 2];
    let read = u32[L.C_READ >> 2];
    if (((write - read) >>> 0) > this.#ringSize) this.#poison("read cursor passed write cursor");
    for (;;) {
      const start = read;
      while (read !== write) {
        const state = Atomics.load(i32, (L.slotOffset(read & mask) + L.S_STATE) >> 2);
        if (state !== L.SlotState.Done && state !== L.SlotState.Taken) {
          if (
            state !== L.SlotState.Released && state !== L.SlotState.Held &&
            state !== L.SlotState.Withdrawn
          ) break;
        }
        read = (read + 1) >>> 0;
      }
      if (read === start) break;
      u32[L.C_READ >> 2] = read;
      this.#reclaimLocked();
      // The reclaim moves the cursor on past messages released meanwhile, and freed their
      // slots: a lone receiver hands out and releases what it took ahead without the lock.
      read = u32[L.C_READ >> 2];
    }
    if (read === write) {
      if (u32[L.C_LIVE_SENDERS >> 2] === 0) {
        // Not drained while another receiver's getMany batch may give messages back: it is
        // waited for. A dead holder's batch is back in line, behind the cursor, once a reap
        // finds it: a take's above, or a wait's, at most REAP_EVERY_MS apart (a reap at every
        // take cost a liveness check of every end at every look while a live holder copied).
        if (this.#otherHolderLocked() >= 0) return undefined;
        // Nor while a message given back without the lock waits behind the cursor.
        if (this.#restoreReturnedLocked()) return this.#takeLocked();
        this.#confirmNoneLeftLocked(L.ParticipantKind.Sender);
        throw new ClosedError(this.goneMessage("sender", "and the queue is drained"), {
          reason: "drained",
        });
      }
      return undefined;
    }
    try {
      this.#markBatchBehindLocked(read);
      return this.#takeReadyLocked(read, write);
    } finally {
      this.#clearHoldBacks();
    }
  }

  /**
   * Puts the messages given back without the lock behind the read cursor (see
   * L.SlotState.Returned) in line again, as their takers would have with the lock: the
   * cursor back to the first, each Ready. Their takers never touch them again, so any lock
   * holder may, without waiting for their removal: a take when L.W_RETURNED counts any, and,
   * whatever it counts, a reap and a take that finds the queue drained (a count one short must
   * not keep the queue from ever saying so). Returns whether there was any.
   */
  #restoreReturnedLocked(): boolean {
    const u32 = this.#u32;
    const i32 = this.#i32;
    // What was counted before the scan began was given back before: the scan finds it.
    const counted = Math.max(Atomics.load(i32, L.W_RETURNED >> 2), 0);
    const tail = u32[L.C_TAIL >> 2];
    const behind = Math.min((u32[L.C_READ >> 2] - tail) >>> 0, this.#ringSize);
    let first = -1;
    for (let k = 0; k < behind; k++) {
      const at = (L.slotOffset((tail + k) & this.#mask) + L.S_STATE) >> 2;
      if (Atomics.load(i32, at) !== L.SlotState.Returned) continue;
      // The cursor first: killed in between, the holder leaves the slot Returned, for the next.
      if (first < 0) u32[L.C_READ >> 2] = (tail + (first = k)) >>> 0;
      Atomics.store(i32, at, L.SlotState.Ready);
    }
    // Counts that land meanwhile stay (their slots may lie where the scan had passed); a count
    // below zero (forged) goes.
    for (let n = Atomics.load(i32, L.W_RETURNED >> 2); n !== 0;) {
      const seen = Atomics.compareExchange(i32, L.W_RETURNED >> 2, n, Math.max(n - counted, 0));
      if (seen === n) break;
      n = seen;
    }
    return first >= 0;
  }

  /** Before a scan from the read cursor (a take, or a count of what it would pass over): notes
   * another receiver marked as the getMany holder, and holds back the senders of its batch
   * behind the cursor. {@linkcode #clearHoldBacks} undoes it. */
  #markBatchBehindLocked(read: number): void {
    if (this.#u32[L.C_LIVE_RECEIVERS >> 2] <= 1) return;
    this.#otherHolder = this.#otherHolderLocked();
    if (this.#otherHolder >= 0) this.#markHeldBehindLocked(read);
  }

  /** Forgets the holder and the held-back senders of a scan, for the next one. */
  #clearHoldBacks(): void {
    this.#otherHolder = -1;
    if (this.#writingMarked) {
      this.#writing.fill(0);
      this.#writingMarked = false;
    }
  }

  /**
   * How many messages are ready but held back, each behind an earlier message of its sender
   * that is not (still being written, or in another receiver's getMany batch): what a take now
   * would pass over. For the words of a get that timed out; 0 on a queue closed or unusable,
   * or whose lock a live holder kept past BRIEF_LOCK_MS (NO_WAIT).
   */
  heldBackMessages(): number {
    if (this.#closed || this.#u32[L.C_IN_FLIGHT >> 2] === 0) return 0;
    // Briefly: the call's timeout is up, and a lock held long (a stopped end) must not make it
    // later. Without the lock, nothing is said.
    try {
      if (!this.#lockBy(NO_WAIT)) return 0;
    } catch {
      return 0; // a dead holder's lock taken over found the queue beyond repair: said next call
    }
    let held = 0;
    try {
      this.#checkUsable();
      const u32 = this.#u32;
      const read = u32[L.C_READ >> 2];
      const write = u32[L.C_WRITE >> 2];
      this.#markBatchBehindLocked(read);
      const span = Math.min((write - read) >>> 0, this.#ringSize);
      for (let k = 0; k < span; k++) {
        const slot = (read + k) & this.#mask;
        const s = L.slotOffset(slot);
        const state = Atomics.load(this.#i32, (s + L.S_STATE) >> 2);
        if (this.#holdsBackItsSender(state, s)) {
          this.#holdBackSenderLocked(slot, s);
        } else if (
          isWaiting(state) &&
          this.#writing[u32[(s + L.S_SENDER) >> 2] % L.MAX_PARTICIPANTS] !== 0
        ) held++;
      }
    } catch {
      held = 0; // corrupt: the next call says so
    } finally {
      this.#clearHoldBacks();
      this.#unlock();
    }
    return held;
  }

  /** The participant index of another receiver marked as the getMany holder, or -1. A mark
   * naming no receiver (forged, or left by a wrongful reap's end) is cleared: it would hold
   * back senders, and keep a drained queue from saying so, for good. */
  #otherHolderLocked(): number {
    const mark = Atomics.load(this.#i32, L.W_HOLDER >> 2);
    if (mark === 0 || mark === this.#self + 1) return -1;
    if (!this.#namesReceiver(mark)) {
      Atomics.compareExchange(this.#i32, L.W_HOLDER >> 2, mark, 0);
      return -1;
    }
    return mark - 1;
  }

  /**
   * Marks, as #takeReadyLocked does for messages still being written, the senders of messages
   * the receiver marked as the getMany holder has in its batch behind the read cursor (it
   * moved the cursor past them): should it die, they come back, and must come before their
   * senders' later messages. It holds only while it is the only receiver, so another one is
   * there only since: the scan costs the span behind the cursor, and runs only while another
   * receiver is marked (L.W_HOLDER).
   */
  #markHeldBehindLocked(read: number): void {
    const tail = this.#u32[L.C_TAIL >> 2];
    const span = Math.min((read - tail) >>> 0, this.#ringSize);
    for (let k = 0; k < span; k++) {
      const slot = (tail + k) & this.#mask;
      const s = L.slotOffset(slot);
      if (this.#inOthersBatch(Atomics.load(this.#i32, (s + L.S_STATE) >> 2), s)) {
        this.#holdBackSenderLocked(slot, s);
      }
    }
  }

  /** Whether the slot at offset `s`, in `state`, is in another receiver's getMany batch:
   * Held, or Taken by the marked holder (about to hold it; killed first, the message counts
   * received, as a get's being copied, and its sender's later ones may follow). */
  #inOthersBatch(state: number, s: number): boolean {
    if (state === L.SlotState.Held) return this.#u32[(s + L.S_TAKEN_BY) >> 2] !== this.#self;
    return state === L.SlotState.Taken && this.#otherHolder >= 0 &&
      this.#u32[(s + L.S_TAKEN_BY) >> 2] === this.#otherHolder;
  }

  /** Whether the slot at offset `s`, in `state` and ahead of the read cursor, keeps its
   * sender's later messages from being taken: still being written (a Spare becomes so), or in
   * another receiver's getMany batch. */
  #holdsBackItsSender(state: number, s: number): boolean {
    return state === L.SlotState.Writing || state === L.SlotState.Spare ||
      this.#inOthersBatch(state, s);
  }

  /** Marks slot `slot`'s sender (its slot offset `s`) so that #takeReadyLocked takes none of
   * its later messages in this take: that slot's message must come before them. */
  #holdBackSenderLocked(slot: number, s: number): void {
    const sender = this.#u32[(s + L.S_SENDER) >> 2];
    if (sender >= L.MAX_PARTICIPANTS) this.#poison(`slot ${slot} names sender ${sender}`);
    this.#writing[sender] = 1;
    this.#writingMarked = true;
  }

  /** The first Ready slot from `read` on whose sender has no earlier slot still Writing. */
  #takeReadyLocked(read: number, write: number): TakenMessage | undefined {
    const u32 = this.#u32;
    const aloneAt = this.#aloneAt();
    const i32 = this.#i32;
    const f64 = this.#f64;
    const mask = this.#mask;
    const writing = this.#writing;
    for (let k = read; k !== write; k = (k + 1) >>> 0) {
      const slot = k & mask;
      const s = L.slotOffset(slot);
      const state = Atomics.load(i32, (s + L.S_STATE) >> 2);
      // In another receiver's getMany batch, a message may yet come back (should that receiver
      // die), and must then still come before its sender's later ones: they wait, as behind a
      // message still being written.
      if (this.#holdsBackItsSender(state, s)) {
        this.#holdBackSenderLocked(slot, s);
        continue;
      }
      // A message prefetched and not yet handed out (by another receiver, or by this one
      // before a failed hand-out) is taken over like a Ready one, in ring order: a receiver
      // that prefetched while alone never holds work back from one that came later. So is one
      // a closing receiver gave back without the lock.
      const prefetched = state === L.SlotState.Prefetched || state === L.SlotState.Returned;
      if (state !== L.SlotState.Ready && !prefetched) {
        if (
          state !== L.SlotState.Taken && state !== L.SlotState.Released &&
          state !== L.SlotState.Done && state !== L.SlotState.Held &&
          state !== L.SlotState.Withdrawn
        ) {
          this.#poison(`slot ${slot} in state ${state} between the read and write cursors`);
        }
        continue; // taken out of turn already, or finished
      }
      const sender = u32[(s + L.S_SENDER) >> 2];
      if (sender < L.MAX_PARTICIPANTS && writing[sender] !== 0) continue;
      const segment = u32[(s + L.S_SEGMENT) >> 2];
      const offset = f64[(s + L.S_OFFSET) >> 3];
      const length = f64[(s + L.S_LENGTH) >> 3];
      this.#checkPlacement(slot, segment, offset, length);
      // A prefetched one's holder hands it out without the lock: claim it with a CAS, then own
      // it. Claimed in between, so neither the holder's hand-out nor its release can act on a
      // slot whose taker is half recorded.
      if (
        prefetched &&
        Atomics.compareExchange(i32, (s + L.S_STATE) >> 2, state, L.SlotState.Claimed) !== state
      ) continue;
      u32[(s + L.S_TAKEN_BY) >> 2] = this.#self;
      Atomics.store(i32, (s + L.S_STATE) >> 2, L.SlotState.Taken);
      this.#takenAt = k;
      this.#takenInOrder = k === read;
      if (k === read) u32[L.C_READ >> 2] = (read + 1) >>> 0;
      return { slot, segment, offset, length, aloneAt };
    }
    return undefined;
  }

  /**
   * Takes up to PREFETCH_MESSAGES more small messages that follow `first` in ring order, when
   * this end is the only receiver: one critical section then serves many gets, which cuts the
   * lock traffic between sender and receiver and a fifth of a small get's cost (100 B getSync
   * in one thread: 770 -> 610 ns). Stops at the first slot that is not Ready, so it never
   * passes a message still being written.
   */
  #prefetchLocked(first: TakenMessage): void {
    const u32 = this.#u32;
    if (
      first.segment !== 0 || first.length > PREFETCH_MAX_BYTES ||
      u32[L.C_LIVE_RECEIVERS >> 2] !== 1
    ) return;
    const i32 = this.#i32;
    const f64 = this.#f64;
    const write = u32[L.C_WRITE >> 2];
    let k = (this.#takenAt + 1) >>> 0;
    for (let n = 0; n < PREFETCH_MESSAGES && k !== write; n++, k = (k + 1) >>> 0) {
      const slot = k & this.#mask;
      const s = L.slotOffset(slot);
      if (Atomics.load(i32, (s + L.S_STATE) >> 2) !== L.SlotState.Ready) break;
      const segment = u32[(s + L.S_SEGMENT) >> 2];
      const length = f64[(s + L.S_LENGTH) >> 3];
      if (segment !== 0 || length > PREFETCH_MAX_BYTES) break;
      const offset = f64[(s + L.S_OFFSET) >> 3];
      this.#checkPlacement(slot, segment, offset, length);
      u32[(s + L.S_TAKEN_BY) >> 2] = this.#self;
      Atomics.store(i32, (s + L.S_STATE) >> 2, L.SlotState.Prefetched);
      this.#prefetched.push({ slot, segment, offset, length, aloneAt: -1 }); // see hand-out
    }
  }

  /** The next prefetched message, made Taken without the lock; undefined when it is no
   * longer this end's (then the locked path takes whatever is still prefetched for it). */
  #handOutPrefetched(): TakenMessage | undefined {
    if (this.#u32[L.H_STATE >> 2] !== L.QueueState.Ready) this.#checkUsable();
    const m = this.#prefetched[this.#prefetchHead++];
    if (this.#prefetchHead === this.#prefetched.length) this.#forgetPrefetched();
    const s = L.slotOffset(m.slot);
    // Stamped at its hand-out, not as it was taken ahead: a receiver that came and went before
    // took none of this sender's later messages, as it would have taken this one over first,
    // in ring order (stamped then, a batch held none of what it had taken ahead, and a kill
    // lost them all). Before the CAS: once it is Taken, a receiver that comes may pass it and
    // take this sender's next one, and leave again before a stamp read after the CAS.
    const aloneAt = this.#aloneAt();
    if (
      this.#u32[(s + L.S_TAKEN_BY) >> 2] === this.#self &&
      Atomics.compareExchange(
          this.#i32,
          (s + L.S_STATE) >> 2,
          L.SlotState.Prefetched,
          L.SlotState.Taken,
        ) === L.SlotState.Prefetched
    ) {
      m.aloneAt = aloneAt;
      return m;
    }
    // Reaped by an end that took this one for dead, or a forged word: the rest is doubtful.
    this.#forgetPrefetched();
    return undefined;
  }

  /** L.W_RECEIVER_EPOCH if this end is the only receiver, else -1: a message's stamp as it is
   * taken (TakenMessage.aloneAt). The epoch first: a receiver joining counts itself before it
   * moves the epoch, so a stamp that sees the epoch it moved also sees it counted; one leaving
   * uncounts itself first, so a stamp may see it gone with the epoch it left, which moves on. */
  #aloneAt(): number {
    const epoch = Atomics.load(this.#u32, L.W_RECEIVER_EPOCH >> 2);
    return this.#u32[L.C_LIVE_RECEIVERS >> 2] === 1 ? epoch : -1;
  }

  #forgetPrefetched(): void {
    this.#prefetched.length = 0;
    this.#prefetchHead = 0;
  }

  /** Poisons the queue when slot `slot` places its message outside its segment. */
  #checkPlacement(slot: number, segment: number, offset: number, length: number): void {
    if (!this.#validPlacement(slot, segment, offset, length)) {
      this.#poison(`slot ${slot} places ${length} bytes at ${offset} in segment ${segment}`);
    }
  }

  #validPlacement(slot: number, segment: number, offset: number, length: number): boolean {
    if (!(Number.isInteger(offset) && Number.isInteger(length) && offset >= 0 && length >= 0)) {
      return false;
    }
    if (segment === 0) return offset % L.MESSAGE_ALIGN === 0 && offset + length <= this.arenaSize;
    if (segment > L.MAX_EXTENSIONS || offset !== 0) return false;
    return this.#extensionTable.carries(segment - 1, slot, length);
  }

  /** Moves a slot from `from` to Done, returning its capacity, crediting its sender's ack
   * count when it had been delivered, and reclaiming space. */
  #finishLocked(slot: number, from: number, reclaim = true): void {
    if (!this.#doneLocked(slot, from)) return;
    if (reclaim) this.#reclaimLocked();
  }

  /**
   * Moves slot `slot` from `from` to Done and books it (see #creditLocked); false when it was
   * not in `from`. Under the lock nothing else moves a slot out of Released, Writing or a dead
   * taker's Taken, so one found there goes Done. A received message's settle is recorded while
   * it is under way (L.C_CREDITING_SLOT): see #finishCreditLocked.
   */
  #doneLocked(slot: number, from: number): boolean {
    const s = L.slotOffset(slot);
    const at = (s + L.S_STATE) >> 2;
    // Load first: a CAS would take every slot's cache line from its owner.
    if (Atomics.load(this.#i32, at) !== from) return false;
    const delivered = from !== L.SlotState.Writing && from !== L.SlotState.Spare &&
      from !== L.SlotState.Withdrawn;
    if (delivered) {
      this.#f64[L.C_CREDIT_BASE >> 3] = this.#f64[L.C_TOTAL_RELEASED >> 3];
      this.#u32[L.C_CREDITING_SLOT >> 2] = slot + 1;
    }
    const moved = Atomics.compareExchange(this.#i32, at, from, L.SlotState.Done) === from;
    if (moved) {
      this.#creditLocked(s, delivered);
      if (isUnsettled(from)) this.#settledUncounted++;
    }
    if (delivered) this.#u32[L.C_CREDITING_SLOT >> 2] = 0;
    return moved;
  }

  /**
   * Counts the received message whose settle a dead lock holder left half done: once the
   * slot is Done, the total must count it, and counts it one time whether or not the holder
   * got that far (before: a kill between the two left `stats()` one short for good). The
   * rest of that settle (in flight, the extension, the ack) the recount and the ack check
   * redo from the slot ring.
   */
  #finishCreditLocked(): void {
    const marked = this.#u32[L.C_CREDITING_SLOT >> 2];
    if (marked === 0) return;
    this.#u32[L.C_CREDITING_SLOT >> 2] = 0;
    const slot = marked - 1;
    if (slot >= this.#ringSize) return; // forged: there is nothing to finish
    const state = Atomics.load(this.#i32, (L.slotOffset(slot) + L.S_STATE) >> 2);
    const base = this.#f64[L.C_CREDIT_BASE >> 3];
    if (state === L.SlotState.Done && this.#f64[L.C_TOTAL_RELEASED >> 3] === base) {
      this.#f64[L.C_TOTAL_RELEASED >> 3] = base + 1;
    }
  }

  /** Books a slot that just became Done: one less in flight, its extension (if any) idle
   * at once, not when the ring's tail gets there (a lease held on an earlier message would
   * otherwise keep every later extension busy: none reused, none dropped, a new segment per
   * message up to the budget), and, when it had been delivered, one more ack for its
   * sender. */
  #creditLocked(s: number, delivered: boolean): void {
    const u32 = this.#u32;
    const inFlight = u32[L.C_IN_FLIGHT >> 2];
    u32[L.C_IN_FLIGHT >> 2] = inFlight > 0 ? inFlight - 1 : 0;
    const segment = u32[(s + L.S_SEGMENT) >> 2];
    if (segment > 0 && segment <= L.MAX_EXTENSIONS) {
      this.#extensionTable.idleLocked(segment - 1);
      // Whichever end settled it (often a receiver), the next put trims.
      u32[L.C_TRIM_DUE >> 2] = 1;
    }
    if (!delivered) return;
    this.#f64[L.C_TOTAL_RELEASED >> 3]++;
    const sender = u32[(s + L.S_SENDER) >> 2];
    if (sender < L.MAX_PARTICIPANTS) {
      const p = L.participantOffset(sender);
      if (u32[(p + L.P_GEN) >> 2] === u32[(s + L.S_SENDER_GEN) >> 2]) {
        Atomics.add(u32, (p + L.P_ACKED) >> 2, 1);
      }
    }
  }

  /**
   * Settles Released slots (see SlotState.Released), then reclaims. The unsettled count
   * bounds the scan: releases come mostly in order, so the first slots scanned are the ones.
   * With `all`, the whole span is scanned whatever the count says: for the few, slow places
   * that must not miss a release the count does not cover (a releaser killed between its CAS
   * and its count): reapDead, which waits that time out run.
   */
  #settleLocked(all = false): void {
    const i32 = this.#i32;
    // Settles since the last look come off first: the count read must be what is still due.
    this.#uncountSettledLocked();
    const pending = Atomics.load(i32, L.W_UNSETTLED >> 2);
    // Only settles lower the count, under the lock, and never below zero.
    if (pending < 0) this.#poison(`unsettled count ${pending}`);
    if (pending > 0 || all) {
      const u32 = this.#u32;
      const tail = u32[L.C_TAIL >> 2];
      // Up to the write cursor: a message taken out of turn is released beyond the read cursor.
      const span = this.#slotsFrom(tail);
      let settled = 0;
      let k = 0;
      for (; k < span && (all || settled < pending); k++) {
        const slot = (tail + k) & this.#mask;
        const state = Atomics.load(i32, (L.slotOffset(slot) + L.S_STATE) >> 2);
        if (isUnsettled(state) && this.#doneLocked(slot, state)) settled++;
      }
      // A full scan settled every release counted when it began, and maybe some the count
      // never covered (a releaser killed between its two steps): exactly `pending` comes off.
      // Short of it, the count had run ahead (a release counted after a settle took its slot,
      // or a forged word): the excess goes rather than costing every call a scan of the ring.
      // More than it, the count stays as the releases since make it, rather than lose theirs.
      if (k === span) this.#settledUncounted = pending;
      this.#reclaimLocked();
      this.#uncountSettledLocked();
    }
  }

  /**
   * Takes the slots settled since the last call off the unsettled count, which never goes
   * below zero. Every settle counts, wherever it happens (#reclaimLocked settles the Released
   * slots it meets at the tail, and so do the ack check and cancels): a settle left uncounted
   * leaves the count ahead, and each count ahead costs the next settle a scan of the whole
   * ring. Releases land between a settle's reading of the count and its reclaim all the time
   * in a busy stream (a sender waiting for room locks at every release), and so scans of the
   * ring were most of a full queue's lock holds: in a 64 B stream between two processes,
   * half of all settles, 460 slots on average at capacity 1024. A slot settled between its
   * releaser's two steps takes a unit of another release until its own lands (or none, at
   * zero: the count then stays one ahead until a scan drops it). One whose releaser died
   * between them takes one for good, so the reap of a dead receiver counts the ring afresh
   * (#recountUnsettledLocked).
   */
  #uncountSettledLocked(): void {
    const n = this.#settledUncounted;
    if (n === 0) return;
    this.#settledUncounted = 0;
    const i32 = this.#i32;
    const at = L.W_UNSETTLED >> 2;
    for (let count = Atomics.load(i32, at); count > 0;) {
      const seen = Atomics.compareExchange(i32, at, count, Math.max(0, count - n));
      if (seen === count) return;
      count = seen;
    }
  }

  /** Frees Done slots at the tail, in order, with their arena space or extension. */
  #reclaimLocked(): void {
    const u32 = this.#u32;
    const f64 = this.#f64;
    const write = u32[L.C_WRITE >> 2];
    let read = u32[L.C_READ >> 2];
    let tail = u32[L.C_TAIL >> 2];
    // Past the read cursor too, which then moves along: messages handed out ahead of it (out
    // of turn, or prefetched) give their space back as soon as they are released, not at the
    // next take.
    for (let guard = 0; tail !== write && guard < this.#ringSize; guard++) {
      const s = L.slotOffset(tail & this.#mask);
      const state = Atomics.load(this.#i32, (s + L.S_STATE) >> 2);
      if (isUnsettled(state)) {
        // Not settled yet (a cancel or a reap reclaims without settling first): settle it.
        if (!this.#doneLocked(tail & this.#mask, state)) break;
      } else if (state !== L.SlotState.Done) break;
      // An extension went idle when its message became Done (see #creditLocked), and may
      // carry another message by now: only the arena is freed in ring order.
      if (u32[(s + L.S_SEGMENT) >> 2] === 0) {
        const end = f64[(s + L.S_ARENA_END) >> 3];
        if (end > f64[L.C_ARENA_TAIL >> 3] && end <= f64[L.C_ARENA_HEAD >> 3]) {
          f64[L.C_ARENA_TAIL >> 3] = end;
        }
      }
      Atomics.store(this.#i32, (s + L.S_STATE) >> 2, L.SlotState.Free);
      if (tail === read) read = (read + 1) >>> 0;
      tail = (tail + 1) >>> 0;
    }
    // Read first: a holder killed between the two stores leaves the tail behind the read
    // cursor, as everywhere else, never ahead of it.
    u32[L.C_READ >> 2] = read;
    u32[L.C_TAIL >> 2] = tail;
    // An empty queue restarts its arena at offset 0: the next message need not wrap, and the
    // logical offsets (f64) never grow past exact integers.
    if (tail === u32[L.C_WRITE >> 2]) {
      f64[L.C_ARENA_TAIL >> 3] = 0;
      f64[L.C_ARENA_HEAD >> 3] = 0;
    } else if (f64[L.C_ARENA_TAIL >> 3] > ARENA_REBASE_AT) {
      this.#rebaseArenaLocked();
    }
  }

  /** Shifts every logical arena offset down by whole laps of the arena. */
  #rebaseArenaLocked(): void {
    const f64 = this.#f64;
    const shift = Math.floor(f64[L.C_ARENA_TAIL >> 3] / this.arenaSize) * this.arenaSize;
    f64[L.C_ARENA_TAIL >> 3] -= shift;
    f64[L.C_ARENA_HEAD >> 3] -= shift;
    const tail = this.#u32[L.C_TAIL >> 2];
    const span = this.#slotsFrom(tail);
    for (let k = 0; k < span; k++) {
      const s = L.slotOffset((tail + k) & this.#mask);
      f64[(s + L.S_ARENA_END) >> 3] = Math.max(0, f64[(s + L.S_ARENA_END) >> 3] - shift);
      if (this.#u32[(s + L.S_RUN) >> 2] !== 0) {
        f64[(s + L.S_RUN_START) >> 3] = Math.max(0, f64[(s + L.S_RUN_START) >> 3] - shift);
      }
    }
  }

  /**
   * A holder killed inside a critical section may have left it half done: a slot reserved
   * past the write cursor, slots freed with the tail cursor not moved, counters not yet
   * updated, an extension marked busy for no slot. Recounts all of that from the slot ring
   * and the participant table, which every critical section updates first.
   */
  #recountLocked(): void {
    const u32 = this.#u32;
    const i32 = this.#i32;
    const stateOf = (k: number) =>
      Atomics.load(i32, (L.slotOffset(k & this.#mask) + L.S_STATE) >> 2);
    let read = u32[L.C_READ >> 2];
    const write = u32[L.C_WRITE >> 2];
    let tail = u32[L.C_TAIL >> 2];
    // Slots a reclaim freed before its holder died, up to the write cursor (a reclaim runs
    // past the read cursor, which then follows).
    while (tail !== write && stateOf(tail) === L.SlotState.Free) {
      if (tail === read) read = (read + 1) >>> 0;
      tail = (tail + 1) >>> 0;
    }
    u32[L.C_READ >> 2] = read;
    u32[L.C_TAIL >> 2] = tail;
    const span = (write - tail) >>> 0;
    const arenaHead = this.#f64[L.C_ARENA_HEAD >> 3];
    let inFlight = 0;
    const used = new Set<number>();
    for (let k = 0; k < this.#ringSize; k++) {
      const s = L.slotOffset((tail + k) & this.#mask);
      const state = Atomics.load(i32, (s + L.S_STATE) >> 2);
      if (k >= span) {
        if (state !== L.SlotState.Free) Atomics.store(i32, (s + L.S_STATE) >> 2, L.SlotState.Free);
        continue;
      }
      // A takeover cut short: the message goes back to the queue (its holder's hand-out
      // fails on Ready, and the holder drops what it prefetched).
      if (state === L.SlotState.Claimed) {
        Atomics.store(i32, (s + L.S_STATE) >> 2, L.SlotState.Ready);
      }
      if (state !== L.SlotState.Done && state !== L.SlotState.Free) inFlight++;
      // A Done message's extension went idle with it (see #creditLocked).
      if (state !== L.SlotState.Free && state !== L.SlotState.Done) {
        used.add(u32[(s + L.S_SEGMENT) >> 2] - 1);
      }
      // A rebase cut short had shifted the arena cursors down by whole laps of the arena, and
      // not yet this slot's end: past the head, it is that many laps too high.
      const end = this.#f64[(s + L.S_ARENA_END) >> 3];
      if (u32[(s + L.S_SEGMENT) >> 2] === 0 && end > arenaHead) {
        this.#f64[(s + L.S_ARENA_END) >> 3] = end -
          Math.ceil((end - arenaHead) / this.arenaSize) * this.arenaSize;
      }
      // So with a run's chunk start, which only checks use: one that was exactly a lap below
      // the head stays a lap high, and the checks are the weaker for that slot.
      const runStart = this.#f64[(s + L.S_RUN_START) >> 3];
      if (u32[(s + L.S_RUN) >> 2] !== 0 && runStart > arenaHead) {
        this.#f64[(s + L.S_RUN_START) >> 3] = runStart -
          Math.ceil((runStart - arenaHead) / this.arenaSize) * this.arenaSize;
      }
    }
    u32[L.C_IN_FLIGHT >> 2] = inFlight;
    this.#recountUnsettledLocked();
    this.#extensionTable.idleUnusedLocked(used);
    u32[L.C_LIVE_SENDERS >> 2] = this.#participants.count(L.ParticipantKind.Sender);
    u32[L.C_LIVE_RECEIVERS >> 2] = this.#participants.count(L.ParticipantKind.Receiver);
    // A receiver may have joined or left half recorded: no message taken before is held.
    Atomics.add(u32, L.W_RECEIVER_EPOCH >> 2, 1);
  }

  /** Poisons the queue when the audit finds a problem (see Audit.problem). */
  #auditLocked(): void {
    const problem = this.#audit.problem();
    if (problem !== undefined) this.#poison(problem);
  }

  /** Before the queue is taken for closed on a count of 0: poisons it if the participant
   * table still holds an end of `kind`, rather than end a stream early on a forged count. */
  #confirmNoneLeftLocked(kind: number): void {
    const problem = this.#audit.noneLeftProblem(kind);
    if (problem !== undefined) this.#poison(problem);
  }

  #unlinkAllLocked(): void {
    this.#extensionTable.unlinkAllLocked();
    native.shmUnlink(this.name, { missingOk: true });
  }
}

/** A futex word with its sequence and waiter-count indexes. */
export interface FutexWord {
  readonly words: Int32Array;
  readonly seq: number;
  readonly waiters: number;
  /** Where in a participant entry its share of `waiters` is kept (L.P_WAITING, …). */
  readonly share: number;
  readonly pointer: Deno.PointerObject;
  /** How long this end spins on the word before it sleeps; wait.ts adapts it. */
  spinMs: number;
}
