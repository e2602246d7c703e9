// SPDX-License-Identifier: BSD-3-Clause
// lock_order.h — the engine's locks in precedence order: the one place that says which lock may be taken
// while which other is held (as nbdkit's server/internal.h lists its locks). No code lives here.
//
// A thread holding a lock may take only locks listed *below* it. Leaf locks are never held while calling out
// of their module. Clang's -Wthread-safety checks what each lock guards (GUARDED_BY, REQUIRES, EXCLUDES on
// the declarations); this order is checked by TSan's lock-order detector in the fault-injection model test
// (core/tests/model_test.cpp), which runs takes, destroys, detaches and info() against failing copy-on-write.
//
//  1. Engine::control_mutex_    serialises control operations; never held across a wait for I/O in flight
//                               or state directory I/O: not across a take's freezes and drain, a CBT
//                               reset's drain, a destroy's drain and release, a detach's drain and CBT
//                               save, an attach's CBT load and save, the creation of storage files by a
//                               create or an append, or the storage ledger's write; nor across a look at
//                               the file system that may stall (resolving a storage path, checking it
//                               against the files a front end serves): those run before it is taken. The
//                               registries
//                               Engine::taking_, resetting_, destroying_, releasing_, detaching_,
//                               attaching_, creating_ and appending_ (under 3) keep other calls off what
//                               those use meanwhile, and they take this lock again, briefly, only to
//                               register or to check and commit (a take, a reset and an attach register
//                               under it and commit without it: nothing they reserved can change
//                               meanwhile). Never taken while a gate is frozen (2).
//  1b. Engine::ledger_mutex_    serialises writes of the storage ledger (list and write as one); held across
//                               that write (state directory I/O) and Engine::mutex_ (to list).
//  2. IoGate (freeze/close)     not a lock but a wait: freeze() and close() wait for I/O inside the gate, so
//                               they are called with nothing below held, and never by a thread inside the
//                               gate.
//  3. Engine::mutex_            the origin and snapshot registries; held briefly, never across I/O or a
//  freeze.
//  3b. ChunkMap::unshare_mutex_ an origin write that met ENOSPC giving up the extents a snapshot shares with
//                               the origin (ChunkMap::unshare_for_write): held across Snapshot::corrupt(),
//                               the leaves ChunkMap::mutex_ and DiffStorage::mutex_ and the punch of the
//                               slots.
//  3c. Snapshot::give_up_mutex_ an origin write that met ENOSPC giving up the snapshot's storage files on the
//                               origin's file system (Snapshot::give_up_storage): held across
//                               Snapshot::corrupt(), DiffStorage::mutex_ (leaf) and the ftruncates of the
//                               files. Never held with 3b, nor 3b with it (Tracker::make_room_for_write calls
//                               them one after the other).
//  4. Snapshot::mutex_          a snapshot's state, members, chunk maps and frozen CBT; never held while
//                               calling a chunk map, the difference storage or the event log (but for
//                               ChunkMap::release_buffers(), which takes leaves only, in a shutdown without
//                               the memory to list the maps).
//  5. leaves — none of these is held while taking another lock:
//       ChunkMap::mutex_          chunk states (waiters sleep on its striped condition variables)
//       DiffStorage::mutex_       allocation cursor and areas (never held across I/O or on_low_space)
//       ExtentSharing::mutex_     per storage area: share extents or copy (never held across the ioctl or the
//                                 log)
//       Snapshot::writeback_mutex_  the writeback queue
//       Cbt::mutex_               the change map and checkpoints (Cbt::visit_live runs a reader under it: the
//                                 reader only computes, takes no lock and calls nothing outside core/cbt)
//       EventLog::mutex_          the event queue
//       IoGate::mutex_            the gate's freeze count (held only inside IoGate)
//       MemoryDevice::mutex_      test device pages
//       DirectFileIo::stripes_    a block under read-modify-write (core/direct_io.h); held across that
//       block's I/O
//  6. below the leaves — taken with a leaf held, takes nothing:
//       the chunk buffer pool's mutex (core/chunk_buffer.cpp): a buffer may be freed with ChunkMap::mutex_
//       held
// Outside the engine, the TLS server's PSK key table (control-socket/tls_credentials.cpp) is a leaf of its
// own: held only to copy one key inside GnuTLS's handshake callback or to add and drop a credentials object's
// keys. nbdsnapd's log writer lock (server/log.cpp) is below every lock, since lines are logged with engine
// locks held: it takes nothing, and is held across a write only to a regular file (a pipe, terminal or socket
// is written without waiting). The filter's registry of its own connections to nbdkit
// (nbdkit-plugin/self_client.cpp) is a leaf, taken under FilterFrontEnd's discovery lock at most.
//
// Paths that nest, for reference: take = 1 -> 3 (both released, taking_), then 2 (hold every origin, then
// drain each, bounded) -> 4 (install), then 3 (taking_ released); CBT reset = 1 -> 3 (both released,
// resetting_), then 2 (bounded drain) -> the leaf Cbt::mutex_, then 3; destroy = 1
// -> 3 (both released), then 2 -> 4, then 3 (releasing_), storage released with nothing held, then 1b -> 3;
// detach = 1 -> 3 (both released), then 2 (close) and 4, the CBT save with nothing held, then 3;
// attach = 1 -> 3 (both released), the CBT load and save with nothing held, then 3;
// create/append = 1 -> 3 (both released), storage files created with nothing held, then 1 -> 3, then
// 1b -> 3; a
// write = gate entered -> ChunkMap -> (released) -> DiffStorage / device I/O -> Snapshot::mutex_ only
// through Snapshot::corrupt(), which holds no other lock.
#pragma once
