/*
** ffipar.h -- the C API of ffipar, and its FFI declaration.
**
** `make` copies this file into ffi/ffipar/cdef.lua, one Lua string per
** section (a section starts at a line "@section NAME" in a comment), so that each
** Lua module declares only what it uses. Keep it plain declarations that
** ffi.cdef parses: no #include, #define or macros, no _Atomic; every struct
** is opaque. Return codes: 0 is success, negative is an FFIPAR_E* code.
** Timeouts are seconds as a double: < 0 waits forever, 0 polls.
*/
#pragma GCC visibility push(default)

/* @section core */

enum {
  FFIPAR_OK        =  0,
  FFIPAR_ETIMEOUT  = -1,  /* the wait ran out; nothing changed */
  FFIPAR_ECLOSED   = -2,  /* the object was closed */
  FFIPAR_ENOMEM    = -3,  /* out of memory */
  FFIPAR_ESYS      = -4,  /* a system call failed */
  FFIPAR_ECANCELLED = -5, /* the calling worker was cancelled */
  FFIPAR_EINVAL    = -6,  /* an argument the Lua side should have refused */
  FFIPAR_EPERM     = -7,  /* the calling thread does not own the object */
  FFIPAR_EBUSY     = -8   /* the object is in use */
};

/* A static, human-readable string for any return code above. */
const char *ffipar_strerror(int rc);

/* Every shared object starts with a reference count. A new object holds one
** reference for its creator; each Lua handle owns one, dropped by its __gc.
** The last release frees the object. Any thread may call these. */
void ffipar_obj_retain(void *obj);
void ffipar_obj_release(void *obj);
/* The object's kind (an FFIPAR_K* value), for checks and debugging. */
int  ffipar_obj_kind(const void *obj);
/* How many shared objects exist now, in the whole process (leak tests). */
int64_t ffipar_obj_live(void);

enum {
  FFIPAR_KSHM = 1, FFIPAR_KTHREAD, FFIPAR_KMUTEX, FFIPAR_KCOND,
  FFIPAR_KBARRIER, FFIPAR_KSEMAPHORE, FFIPAR_KATOMIC, FFIPAR_KGATE,
  FFIPAR_KCHANNEL, FFIPAR_KPOOL
};

/* A message: bytes (a string.buffer encoding) plus the shared objects the
** bytes refer to by index. The message holds one reference to each object
** until it is freed. Owned by whoever holds the pointer. */
typedef struct ffipar_msg ffipar_msg;
ffipar_msg *ffipar_msg_new(const char *data, size_t len, void **objs, int nobjs);
void        ffipar_msg_free(ffipar_msg *m);
const char *ffipar_msg_data(const ffipar_msg *m, size_t *len);
void       *ffipar_msg_obj(const ffipar_msg *m, int i);
int         ffipar_msg_nobjs(const ffipar_msg *m);

/* Declarations replayed in every state (par.cdef). Append-only, process-wide;
** index i runs from 0 to ffipar_cdef_count() - 1. */
int         ffipar_cdef_add(const char *decl, size_t len);
int         ffipar_cdef_count(void);
const char *ffipar_cdef_get(int i, size_t *len);

/* Monotonic clock in seconds. */
double ffipar_now(void);
/* Sleep for `seconds`; returns early with FFIPAR_ECANCELLED when the calling
** worker is cancelled. */
int    ffipar_sleep(double seconds);
/* Online CPUs this process may run on (its affinity mask). */
int    ffipar_cpus(void);
/* The small integer id of the calling thread: 0 for a thread ffipar did not
** start (the main thread), 1, 2, ... for workers, never reused. */
int    ffipar_self_id(void);
/* 1 when the calling worker has been asked to cancel, else 0. */
int    ffipar_self_cancelled(void);
/* The path this shim was loaded from (workers load the same file). */
const char *ffipar_lib_path(void);

/* @section thread */

typedef struct ffipar_thread ffipar_thread;

/* Start a worker: a new OS thread with a new LuaJIT state that sets
** package.path/cpath, loads `boot` (Lua source) and calls it with the thread.
** Takes ownership of `payload` (may be NULL). *out holds one reference for
** the caller; the running worker holds another. */
int  ffipar_thread_new(ffipar_thread **out, const char *boot, size_t bootlen,
                       ffipar_msg *payload, const char *path, const char *cpath);
/* For the worker itself: its payload (owned by the thread; do not free). */
ffipar_msg *ffipar_thread_payload(ffipar_thread *t);
/* For the worker itself: record success with results (takes ownership), or
** failure with a message (copied). Called at most once, before returning. */
void ffipar_thread_succeed(ffipar_thread *t, ffipar_msg *results);
void ffipar_thread_fail(ffipar_thread *t, const char *err, size_t len);
/* Wait until the worker has finished and closed its state. FFIPAR_OK,
** _ETIMEOUT, or _ECANCELLED when the caller is a cancelled worker. */
int  ffipar_thread_join(ffipar_thread *t, double timeout);
/* 0 running, 1 done, 2 failed, 3 failed after cancel was requested. */
int  ffipar_thread_status(const ffipar_thread *t);
const ffipar_msg *ffipar_thread_results(const ffipar_thread *t);
const char *ffipar_thread_error(const ffipar_thread *t, size_t *len);
/* Ask the worker to stop: par.cancelled() turns true in it and its blocking
** ffipar calls return FFIPAR_ECANCELLED. Wakes it if it is blocked. */
void ffipar_thread_cancel(ffipar_thread *t);
int  ffipar_thread_id(const ffipar_thread *t);

/* @section shm */

/* Shared memory: `size` zeroed bytes, 64-byte aligned, reference counted.
** *out is the object (one reference); *data its memory. */
typedef struct ffipar_shm ffipar_shm;
int   ffipar_shm_new(ffipar_shm **out, size_t size);
void *ffipar_shm_data(const ffipar_shm *s);
size_t ffipar_shm_size(const ffipar_shm *s);

/* The race check of checked arrays. A phase is a span in which the same
** slot must not be written by two threads; 0 means "no phase". */
int      ffipar_phase_begin(void);   /* returns the new phase number */
void     ffipar_phase_end(void);
int      ffipar_phase_current(void);
/* Record that the calling thread writes slot i of a checked array whose
** per-slot marks are `marks`; returns 0, or the id + 1 of another thread
** that wrote the slot earlier in the current phase. */
int      ffipar_race_mark(void *marks, int64_t i);

/* @section mutex */

/* (declarations of mutex.c go here) */


/* @section cond */

/* (declarations of cond.c go here) */


/* @section barrier */

/* (declarations of barrier.c go here) */


/* @section semaphore */

/* (declarations of semaphore.c go here) */


/* @section atomic */

/* (declarations of atomic.c go here) */


/* @section gate */

/* A color gate: threads of the same color may be inside together, threads
** of different colors never are. A color is an integer below 2^47:
** [0, 2^45) are the user's integer colors, [2^45, 2^46) string colors
** (ffipar_gate_color), [2^46, 2^47) private colors (one per thread: a
** thread alone inside). Once a thread of another color waits, the gate
** closes to new arrivals of the color inside; waiters are served in groups,
** one group per color, first come first served. */
typedef struct ffipar_gate ffipar_gate;

/* A new, open, empty gate; *out holds one reference (ffipar_obj_release). */
int    ffipar_gate_new(ffipar_gate **out);
/* The process-wide gate called `name` (len bytes), created on first use and
** never freed; *out holds one new reference for the caller. Any thread. */
int    ffipar_gate_named(ffipar_gate **out, const char *name, size_t len);
/* Enter with `color`, waiting up to `timeout` seconds (< 0 forever, 0 try
** once). FFIPAR_OK: inside (call ffipar_gate_leave once). A thread already
** inside with the same color nests (depth + 1, never waits); with another
** color it gets FFIPAR_EBUSY (waiting would deadlock). FFIPAR_ETIMEOUT /
** FFIPAR_ECANCELLED (the calling worker was cancelled): not inside, nothing
** changed. FFIPAR_EINVAL: color >= 2^47, or the thread is inside 8 gates
** already. FFIPAR_ENOMEM. The caller keeps a reference to `g` until its
** leave. Nesting is tracked per OS thread. */
int    ffipar_gate_enter(ffipar_gate *g, uint64_t color, double timeout);
/* Leave (one level of nesting). FFIPAR_EPERM when the calling thread is not
** inside `g`. Never blocks for long (the last one out of a closed gate
** admits the next group under the gate's internal lock). */
int    ffipar_gate_leave(ffipar_gate *g);
/* The calling thread's nesting depth in `g`: 0 when it is not inside. */
int    ffipar_gate_depth(const ffipar_gate *g);
/* The calling thread's private color (the same on every call from it;
** never another thread's). */
double ffipar_gate_private_color(void);
/* The color of the string `name` (len bytes): the same in every thread for
** the same bytes. Negative (FFIPAR_ENOMEM) when out of memory. */
double ffipar_gate_color(const char *name, size_t len);
/* A snapshot, into out[8]: entries, waits (times a thread queued), color
** switches, threads inside, threads waiting, groups queued, closed (0/1),
** the color of the word. Takes the gate's internal lock briefly. */
void   ffipar_gate_stats(ffipar_gate *g, int64_t *out);


/* @section channel */

/* (declarations of channel.c go here) */


/* @section pool */

/* (declarations of pool.c go here) */


#pragma GCC visibility pop
