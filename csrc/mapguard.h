/*
 * l2fast map guard: a file mapped for reading that shrinks under us must not kill the process.
 *
 * The sending daemon maps each source file (zero copy: the C sender's CRC32C and the kernel's
 * sendmmsg read it in place, the digest thread hashes it in place).  Another process may truncate
 * that file while it is sent; any later read of a page past the new end of file raises SIGBUS,
 * whose default action kills the whole daemon (every transfer and chat with it), and a local user
 * could do that on purpose to a root daemon.  A failing disk or a vanished network file system
 * raises the same signal for pages that cannot be read.  (GNU grep dropped its mmap mode for
 * this reason.)
 *
 * The guard keeps a table of mapped ranges.  Its SIGBUS handler, for a fault inside one of them
 * (si_code BUS_ADRERR), maps anonymous zero pages over the rest of that range from the faulting
 * page on, counts the fault on the range and returns: the read that faulted then reads zeros.
 * The owner of the range asks l2f_mapguard_faulted() before trusting what it read (before it
 * sends a digest, while it sends) and fails the file instead.  A fault anywhere else, or any other
 * kind (a hardware memory error), goes to the disposition that was in place before the guard
 * (by default: the process dies, as it would have).
 *
 * The handler is async-signal-safe: it only reads the table with atomic loads, calls mmap(2)
 * (a system call on Linux) and sigaction(2), and adds with atomic operations.
 *
 * The block between CDEF-BEGIN and CDEF-END is read verbatim by csrc/build_ffi.py as part of the
 * cffi cdef.  Functions return >= 0 on success and a negative errno-style code on failure.
 */
#ifndef L2FAST_MAPGUARD_H
#define L2FAST_MAPGUARD_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
/* Ranges guarded at once (a send maps a file while it is being sent; the descriptor limit bounds
 * how many files a process can hold open, 20000 here). */
#define L2F_MAPGUARD_SLOTS 32768

/* Installs the SIGBUS handler (once per process; later calls do nothing and return 0). */
int l2f_mapguard_install(void);

/* Guards [addr, addr + len): returns a slot number (>= 0), or -ENOSPC when every slot is in use,
 * -EINVAL for an empty range.  Installs the handler if it is not yet. */
int l2f_mapguard_add(uintptr_t addr, size_t len);

/* Stops guarding a slot; call it before the range is unmapped.  Unknown slots are ignored. */
void l2f_mapguard_remove(int slot);

/* Faults the handler absorbed in this slot since it was added (0: every read saw the file). */
uint64_t l2f_mapguard_faulted(int slot);

/* Faults absorbed in the whole process since it started: a cheap "did anything happen" check. */
uint64_t l2f_mapguard_faults_total(void);

/* Slots in use now (for tests and status). */
int l2f_mapguard_in_use(void);
/* CDEF-END */

#endif
