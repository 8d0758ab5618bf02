/**
 * A queue's participant table, as one end sees it: taking an entry and recording who runs it,
 * telling live entries from dead ones, and the bookkeeping of an entry freed. What an entry's
 * messages and waiters become when it goes is the queue's (see SharedQueue).
 *
 * @module
 */

import * as native from "../ffi/native.ts";
import { QueueError } from "./errors.ts";
import * as L from "./layout.ts";
import { processToken, thisThread } from "./this_thread.ts";

/** How an end left the table. */
export type Leaving = "closed" | "died";

/** The participant table of one end's mapping of a queue. */
export class Participants {
  readonly #fd: number;
  readonly #i32: Int32Array;
  readonly #u32: Uint32Array;
  readonly #f64: Float64Array;
  /** This end's entry, once claimed. */
  #self = -1;
  #claimedFrom: Leaving | undefined;

  /**
   * @param fd This end's descriptor of the main segment: the lock bytes are its own.
   * @param main The main segment's memory.
   */
  constructor(fd: number, main: ArrayBuffer) {
    this.#fd = fd;
    this.#i32 = new Int32Array(main);
    this.#u32 = new Uint32Array(main);
    this.#f64 = new Float64Array(main);
  }

  /**
   * Claims an entry for this end of queue `name` and records who runs it, returning its index.
   * The exclusive lock on an entry's byte is the claim itself: the kernel grants it to one
   * open file description at a time, and gives it up when its holder dies, so an entry whose
   * byte we win but whose kind is not Free belonged to a dead participant: the queue reaps it
   * (its messages and waiters are the queue's, see SharedQueue's #register) before
   * {@linkcode enterLocked} enters it, free.
   */
  claim(name: string): number {
    let index = -1;
    for (let i = 0; i < L.MAX_PARTICIPANTS && index < 0; i++) {
      if (native.lockByte(this.#fd, L.participantLockByte(i), "exclusive")) index = i;
    }
    if (index < 0) {
      throw new QueueError(
        `queue ${name} already has ${L.MAX_PARTICIPANTS} open ends: close some first`,
      );
    }
    this.#self = index;
    // How the end before this one left it, if it is still taken: the removal of that end
    // under the lock goes by it.
    this.#claimedFrom = !this.taken(index)
      ? undefined
      : this.leftByClose(index)
      ? "closed"
      : "died";
    // Before the lock: whoever checks on this end as the lock's holder reads these.
    this.#recordThread(index);
    return index;
  }

  /** Gives up this end's claim on its entry (its lock byte): it left, or never got in. */
  unclaim(): void {
    native.lockByte(this.#fd, L.participantLockByte(this.#self), "unlock");
  }

  /** Whether entry `index` is taken (by a live end or a dead one). */
  taken(index: number): boolean {
    return this.#u32[(L.participantOffset(index) + L.P_KIND) >> 2] !== L.ParticipantKind.Free;
  }

  /** Enters this end's (free) entry as `kind` (L.ParticipantKind) and counts it live, under
   * the lock: returns the entry's new generation. */
  enterLocked(kind: number): number {
    const u32 = this.#u32;
    const at = L.participantOffset(this.#self);
    const gen = (u32[(at + L.P_GEN) >> 2] + 1) >>> 0;
    u32[(at + L.P_GEN) >> 2] = gen;
    // Again, under the lock: a reap's orphan check of this entry, still free when this end
    // recorded itself (without the lock), may have cleared it since, and a 0 here would have
    // this end's death counted as a close (see leftByClose).
    Atomics.store(this.#i32, (at + L.P_FD) >> 2, this.#fd + 1);
    Atomics.store(u32, (at + L.P_ACKED) >> 2, 0);
    Atomics.store(u32, (at + L.P_WAITING) >> 2, 0);
    Atomics.store(u32, (at + L.P_ACK_WAITING) >> 2, 0);
    u32[(at + L.P_KIND) >> 2] = kind;
    u32[(kind === L.ParticipantKind.Sender ? L.C_LIVE_SENDERS : L.C_LIVE_RECEIVERS) >> 2]++;
    // Atomic: a lone receiver about to hold a getMany message reads the epoch without the lock,
    // after its mark (L.W_HOLDER), which a receiver joining reads after this.
    if (kind === L.ParticipantKind.Receiver) Atomics.add(u32, L.W_RECEIVER_EPOCH >> 2, 1);
    return gen;
  }

  /** Frees entry `index`, of `kind` (read before its messages were seen to), and counts its
   * end gone, `left` as it did. */
  freeLocked(index: number, kind: number, left: Leaving): void {
    const u32 = this.#u32;
    const at = L.participantOffset(index);
    const sender = kind === L.ParticipantKind.Sender;
    const end = sender || kind === L.ParticipantKind.Receiver;
    const live = sender ? L.C_LIVE_SENDERS : L.C_LIVE_RECEIVERS;
    if (end && u32[live >> 2] > 0 && --u32[live >> 2] === 0) {
      const bit = sender ? L.LAST_SENDER_DIED : L.LAST_RECEIVER_DIED;
      const how = u32[L.C_LAST_LEFT_DEAD >> 2];
      u32[L.C_LAST_LEFT_DEAD >> 2] = left === "died" ? how | bit : how & ~bit;
    }
    u32[(at + L.P_KIND) >> 2] = L.ParticipantKind.Free;
    if (kind === L.ParticipantKind.Receiver) Atomics.add(u32, L.W_RECEIVER_EPOCH >> 2, 1);
    // After the entry is freed: a lock holder killed in between leaves one death uncounted,
    // where before it the recovery would reap the entry, and count it, again.
    if (left === "died" && end) {
      u32[(sender ? L.C_SENDERS_DIED : L.C_RECEIVERS_DIED) >> 2]++;
    }
  }

  /** Entries of `kind` whose end is alive: not those gone before a reap removed them (dead,
   * or closed without the lock). */
  countAlive(kind: number): number {
    let n = 0;
    for (let i = 0; i < L.MAX_PARTICIPANTS; i++) {
      if (this.#u32[(L.participantOffset(i) + L.P_KIND) >> 2] === kind && this.isAlive(i)) n++;
    }
    return n;
  }

  /** Entries of `kind` in the participant table. */
  count(kind: number): number {
    let n = 0;
    for (let i = 0; i < L.MAX_PARTICIPANTS; i++) {
      if (this.#u32[(L.participantOffset(i) + L.P_KIND) >> 2] === kind) n++;
    }
    return n;
  }

  /** Clears this end's hint that it may leave an orphan (see L.P_FD): a closing end closes its
   * fd itself. Which also says, to the reap of an entry whose end is gone, that it left by
   * `close()` (see {@linkcode leftByClose}). */
  leavesNoOrphan(): void {
    Atomics.store(this.#i32, (L.participantOffset(this.#self) + L.P_FD) >> 2, 0);
  }

  /** Whether the end of taken entry `index`, gone now, left by `close()` (see L.P_FD), not
   * by dying: one that closed while a stopped peer kept the lock left its entry for a reap. */
  leftByClose(index: number): boolean {
    return Atomics.load(this.#i32, (L.participantOffset(index) + L.P_FD) >> 2) === 0;
  }

  /** How the end before this one left the entry {@linkcode claim} took: "closed" or "died",
   * read before this end recorded itself there; undefined when the entry was free. */
  get claimedFrom(): Leaving | undefined {
    return this.#claimedFrom;
  }

  /** Alive while its process holds its lock byte and the thread that opened it runs. */
  isAlive(index: number): boolean {
    if (!(index >= 0 && index < L.MAX_PARTICIPANTS)) return false;
    if (index === this.#self) return true;
    return native.lockProbe(this.#fd, L.participantLockByte(index)) && this.#threadRuns(index);
  }

  /**
   * Where the ends left in the queue, but this one, are: `"elsewhere"` when one is a live end
   * of another process; else `"workers"` when one is of another thread of this process (a
   * Worker's); else `"here"` (this thread's own, closed at its exit like any).
   */
  remainingEndsLocked(): "elsewhere" | "workers" | "here" {
    const u32 = this.#u32;
    const i32 = this.#i32;
    let workers = false;
    for (let i = 0; i < L.MAX_PARTICIPANTS; i++) {
      if (i === this.#self) continue;
      const at = L.participantOffset(i);
      if (u32[(at + L.P_KIND) >> 2] === L.ParticipantKind.Free) continue;
      if (this.#f64[(at + L.P_PROCESS) >> 3] !== processToken()) {
        if (this.isAlive(i)) return "elsewhere";
      } else if (
        i32[(at + L.P_TID) >> 2] !== i32[(L.participantOffset(this.#self) + L.P_TID) >> 2]
      ) {
        workers = true;
      }
    }
    return workers ? "workers" : "here";
  }

  /**
   * Whether participant `index`'s end is of a thread that is stopped now (SIGSTOP, Ctrl-Z, a
   * debugger): alive, but holding what it holds until resumed. False when that cannot be told
   * (its thread unrecorded, other namespaces, no /proc).
   */
  isStopped(index: number): boolean {
    if (!(index >= 0 && index < L.MAX_PARTICIPANTS) || index === this.#self) return false;
    const at = L.participantOffset(index);
    const pid = this.#i32[(at + L.P_PID) >> 2];
    const tid = this.#i32[(at + L.P_TID) >> 2];
    if (pid <= 0 || tid <= 0) return false;
    return native.threadStopped(pid, this.#threadOf(at, tid));
  }

  /** False once the thread that opened participant `index`'s end has ended (a Worker
   * terminated) while its process lives on; true when that cannot be told. */
  #threadRuns(index: number): boolean {
    const at = L.participantOffset(index);
    const pid = this.#i32[(at + L.P_PID) >> 2];
    const tid = this.#i32[(at + L.P_TID) >> 2];
    // A main thread (tid = pid) ends with its process, which the lock byte already tells.
    if (tid <= 0 || tid === pid) return true;
    return native.threadAlive(pid, this.#threadOf(at, tid));
  }

  /** The thread that opened the end of the entry at byte `at`, whose tid is `tid`, as it
   * recorded itself (see #recordThread). */
  #threadOf(at: number, tid: number): native.ThreadIdentity {
    return {
      tid,
      start: this.#f64[(at + L.P_THREAD_START) >> 3],
      pidNamespace: this.#f64[(at + L.P_PID_NAMESPACE) >> 3],
      timeNamespace: this.#f64[(at + L.P_TIME_NAMESPACE) >> 3],
    };
  }

  /**
   * Whether participant `index` was an end of this process whose thread has ended, which may
   * have left its fd and mappings here (see L.P_FD). Clears the hint: one look is enough, and
   * closing this end looks again regardless.
   */
  leftAnOrphan(index: number): boolean {
    const at = L.participantOffset(index);
    if (this.#i32[(at + L.P_FD) >> 2] === 0) return false;
    if (this.#f64[(at + L.P_PROCESS) >> 3] !== processToken() || this.#threadRuns(index)) {
      return false;
    }
    this.#i32[(at + L.P_FD) >> 2] = 0;
    return true;
  }

  /** Writes who runs this end into its entry: its process and the thread that opened it. */
  #recordThread(index: number): void {
    const at = L.participantOffset(index);
    const thread = thisThread();
    this.#i32[(at + L.P_PID) >> 2] = Deno.pid;
    this.#i32[(at + L.P_TID) >> 2] = thread?.tid ?? 0;
    this.#f64[(at + L.P_THREAD_START) >> 3] = thread?.start ?? 0;
    this.#f64[(at + L.P_PID_NAMESPACE) >> 3] = thread?.pidNamespace ?? 0;
    this.#f64[(at + L.P_TIME_NAMESPACE) >> 3] = thread?.timeNamespace ?? 0;
    this.#f64[(at + L.P_PROCESS) >> 3] = processToken();
    // Not over the mark of an end gone before its entry was removed (see leftByClose): should
    // this end die before it removes that entry (its lock given up on, its process killed),
    // the reap must still tell how that end left. enterLocked writes it then.
    if (this.#claimedFrom === undefined) this.#i32[(at + L.P_FD) >> 2] = this.#fd + 1;
  }
}
