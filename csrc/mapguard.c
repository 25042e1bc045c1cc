/*
 * The map guard: SIGBUS on a guarded mapping becomes zero pages and a count (mapguard.h says why).
 */
#define _GNU_SOURCE
#include "mapguard.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct guard_slot {
    uintptr_t start;  /* 0: free */
    size_t len;
    uint64_t faults;
};

/* Read by the handler with atomic loads only; written under `lock`. */
static struct guard_slot slots[L2F_MAPGUARD_SLOTS];
static uint32_t high_water;     /* slots [0, high_water) may be in use */
static uint64_t faults_total;
static uintptr_t page_mask;     /* ~(page size - 1), set before the handler is installed */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t next_free;      /* where the search for a free slot starts */
static int in_use;
static int installed;
static struct sigaction previous;

static void on_sigbus(int sig, siginfo_t *si, void *context)
{
    (void)context;
    int saved_errno = errno;
    if (si != NULL && si->si_code == BUS_ADRERR) {
        uintptr_t addr = (uintptr_t)si->si_addr;
        uint32_t n = __atomic_load_n(&high_water, __ATOMIC_ACQUIRE);
        for (uint32_t i = 0; i < n; i++) {
            uintptr_t start = __atomic_load_n(&slots[i].start, __ATOMIC_ACQUIRE);
            size_t len = __atomic_load_n(&slots[i].len, __ATOMIC_RELAXED);
            if (start == 0 || addr < start || addr - start >= len)
                continue;
            /* Every page from here to the end of the range is past the end of the file now (or
             * unreadable): zero pages over all of them at once, rather than one fault per page
             * for the rest of a large file. */
            uintptr_t page = addr & page_mask;
            uintptr_t end = (start + len + ~page_mask) & page_mask;
            void *p = mmap((void *)page, end - page, PROT_READ,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (p == MAP_FAILED)
                break;
            __atomic_fetch_add(&slots[i].faults, 1, __ATOMIC_RELEASE);
            __atomic_fetch_add(&faults_total, 1, __ATOMIC_RELEASE);
            errno = saved_errno;
            return;
        }
    }
    /* Not a fault the guard owns: the disposition from before the guard takes it.  A fault
     * repeats when the handler returns and meets that disposition; a signal sent by a process
     * (si_code <= 0) does not repeat, so it is raised again (pending until this handler returns). */
    sigaction(sig, &previous, NULL);
    if (si == NULL || si->si_code <= 0)
        raise(sig);
    errno = saved_errno;
}

static int install_locked(void)
{
    if (installed)
        return 0;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        return -EINVAL;
    page_mask = ~((uintptr_t)page - 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &previous) != 0)
        return -errno;
    installed = 1;
    return 0;
}

int l2f_mapguard_install(void)
{
    pthread_mutex_lock(&lock);
    int rc = install_locked();
    pthread_mutex_unlock(&lock);
    return rc;
}

int l2f_mapguard_add(uintptr_t addr, size_t len)
{
    if (addr == 0 || len == 0)
        return -EINVAL;
    pthread_mutex_lock(&lock);
    int rc = install_locked();
    if (rc == 0) {
        rc = -ENOSPC;
        for (uint32_t k = 0; k < L2F_MAPGUARD_SLOTS; k++) {
            uint32_t i = (next_free + k) % L2F_MAPGUARD_SLOTS;
            if (slots[i].start != 0)
                continue;
            __atomic_store_n(&slots[i].faults, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&slots[i].len, len, __ATOMIC_RELAXED);
            __atomic_store_n(&slots[i].start, addr, __ATOMIC_RELEASE);
            if (i + 1 > high_water)
                __atomic_store_n(&high_water, i + 1, __ATOMIC_RELEASE);
            next_free = (i + 1) % L2F_MAPGUARD_SLOTS;
            in_use++;
            rc = (int)i;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void l2f_mapguard_remove(int slot)
{
    if (slot < 0 || slot >= L2F_MAPGUARD_SLOTS)
        return;
    pthread_mutex_lock(&lock);
    if (slots[slot].start != 0) {
        __atomic_store_n(&slots[slot].start, 0, __ATOMIC_RELEASE);
        in_use--;
        if (in_use == 0)
            next_free = 0;  /* keep the handler's scan short once everything is released */
    }
    pthread_mutex_unlock(&lock);
}

uint64_t l2f_mapguard_faulted(int slot)
{
    if (slot < 0 || slot >= L2F_MAPGUARD_SLOTS)
        return 0;
    return __atomic_load_n(&slots[slot].faults, __ATOMIC_ACQUIRE);
}

uint64_t l2f_mapguard_faults_total(void)
{
    return __atomic_load_n(&faults_total, __ATOMIC_ACQUIRE);
}

int l2f_mapguard_in_use(void)
{
    pthread_mutex_lock(&lock);
    int n = in_use;
    pthread_mutex_unlock(&lock);
    return n;
}
