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
  FFIPAR_EBUSY     = -8,  /* the object is in use */
  FFIPAR_EAGAIN    = -9   /* no new thread now: a thread or memory limit */
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
  FFIPAR_KCHANNEL, FFIPAR_KPOOL, FFIPAR_KSHARE
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
/* The CPU time the calling thread has used, in seconds. */
double ffipar_cpu_now(void);
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

/* Bytecode of Lua modules for worker states, so they load ffipar without
** searching or parsing files: put(name, code) keeps a copy (the first put of
** a name wins); a worker's require finds it before package.path. */
int  ffipar_modcache_put(const char *name, const char *code, size_t len);
int  ffipar_modcache_has(const char *name);
/* Whether worker states may use the shim's allocator (1) or must come from
** luaL_newstate (0, the default): LuaJIT refuses a custom allocator on a
** 64-bit target without GC64. The first spawn or pool tells it, from
** ffi.abi, before any worker state exists. */
void ffipar_state_own_alloc(int yes);

/* @section thread */

typedef struct ffipar_thread ffipar_thread;

/* Start a worker: run the spawned function in a fresh LuaJIT state on
** another OS thread. The state gets the standard libraries and
** package.path/cpath, and runs require("ffipar.worker").run(t, payload).
** Takes ownership of `payload`. *out holds one reference for the caller; the
** running worker holds another. Finished workers park their OS thread (with
** a new, never used state prepared) for the next spawn to reuse. */
int  ffipar_thread_new(ffipar_thread **out, ffipar_msg *payload,
                       const char *path, const char *cpath);
/* For the worker itself: its payload (owned by the thread; do not free). */
ffipar_msg *ffipar_thread_payload(ffipar_thread *t);
/* For the worker itself: record success with results (takes ownership), or
** failure with a message (copied). Called at most once, before returning;
** a worker whose error value is not a string calls both: the results
** message then holds the error value and the traceback. */
void ffipar_thread_succeed(ffipar_thread *t, ffipar_msg *results);
void ffipar_thread_fail(ffipar_thread *t, const char *err, size_t len);
/* Wait until the worker has finished and closed its state. FFIPAR_OK,
** _ETIMEOUT, or _ECANCELLED when the caller is a cancelled worker. */
int  ffipar_thread_join(ffipar_thread *t, double timeout);
/* Wait until the worker has finished, even when the caller is a cancelled
** worker (a parallel call lets its chunks stop before it returns). */
void ffipar_thread_wait(ffipar_thread *t);
/* 0 running, 1 done, 2 failed, 3 failed after cancel was requested. */
int  ffipar_thread_status(const ffipar_thread *t);
const ffipar_msg *ffipar_thread_results(const ffipar_thread *t);
const char *ffipar_thread_error(const ffipar_thread *t, size_t *len);
/* Ask the worker to stop: par.cancelled() turns true in it and its blocking
** ffipar calls return FFIPAR_ECANCELLED. Wakes it if it is blocked. */
void ffipar_thread_cancel(ffipar_thread *t);
int  ffipar_thread_id(const ffipar_thread *t);
/* A readiness descriptor for event loops: an eventfd, made on the first
** call (later calls give the same one), that turns readable once the thread
** is done (ffipar_thread_join(t, 0) would return FFIPAR_OK) and not yet
** joined: the first successful join resets it for good (a descriptor made
** after that join never turns readable). One readiness per thread. It is
** closed with the object, or earlier by ffipar_thread_fd_close: never
** close it yourself. FFIPAR_OK; _ESYS when no descriptor can be made (e.g.
** EMFILE: errno says); _ECLOSED after ffipar_thread_fd_close. */
int  ffipar_thread_fd(ffipar_thread *t, int *out);
/* Close the readiness descriptor now (stop polling it first), so that
** programs with many threads need not wait for the collector; later
** ffipar_thread_fd calls return _ECLOSED. Always FFIPAR_OK. */
int  ffipar_thread_fd_close(ffipar_thread *t);
/* join(0) for a caller that closes the descriptor next, once its poller has
** let go of it (ffipar.uv): FFIPAR_OK when done, consuming the readiness
** like a join but leaving the descriptor as it is (readable, maybe) until
** that close; _ETIMEOUT while running. */
int  ffipar_thread_take(ffipar_thread *t);

/* @section shm */

/* Shared memory: `size` zeroed bytes, 64-byte aligned, reference counted.
** *out is the object (one reference); *data its memory. */
typedef struct ffipar_shm ffipar_shm;
int   ffipar_shm_new(ffipar_shm **out, size_t size);
void *ffipar_shm_data(const ffipar_shm *s);
size_t ffipar_shm_size(const ffipar_shm *s);

/* The race check of checked arrays. A phase is one parallel call (or a
** par.phase); a strand is one piece of it that may run concurrently with the
** others: a chunk of a parallel call, a task or a spawned function. Phase 0
** means "no phase"; strand 0 means "not a strand". */
int      ffipar_phase_begin(void);   /* returns the new phase number */
void     ffipar_phase_end(void);
int      ffipar_phase_current(void);
/* Number `count` new strands of the current phase and remember what they
** are for messages: `what` (len bytes, e.g. "pool:parallel_for at x.lua:3"),
** and for chunks `chunk` > 0 and `n` (strand base + k is the chunk
** [k*chunk, min((k+1)*chunk, n))). Returns the first strand (>= 1), or 0
** outside a phase or when out of memory. Any thread. */
int64_t  ffipar_strand_new(int64_t count, int64_t chunk, int64_t n, const char *what, size_t len);
/* Describe strand `id` of phase `phase`: copies its text (at most cap - 1
** bytes, NUL-terminated) into buf, sets *k (its number within its range)
** and *chunk, *n as given to ffipar_strand_new. Returns 0, or -1 if unknown. */
int      ffipar_strand_describe(int64_t phase, int64_t id, char *buf, size_t cap,
                                int64_t *k, int64_t *chunk, int64_t *n);
/* A checked array's marks are 3 uint64_t per slot, 8-byte aligned: the
** writer and two readers of the slot, each (phase << 32) | strand. `me` is
** the caller's (phase << 32) | strand. Record a read (write) of slot i;
** returns 0, or the strand of another strand of the same phase that wrote
** the slot (> 0), or that read a slot the caller writes (< 0: -strand). */
int64_t  ffipar_race_read(uint64_t *marks, int64_t i, uint64_t me);
int64_t  ffipar_race_write(uint64_t *marks, int64_t i, uint64_t me);
/* Check mode (par.check, FFIPAR_CHECK): -1 not set yet, 0 off, 1 on; one
** process-wide setting, so workers see what the main thread chose. */
int      ffipar_check_get(void);
void     ffipar_check_set(int on);
/* Whether a checked array was ever made in this process (add != 0: one is
** being made). Until then a phase need not number its strands. */
int      ffipar_check_arrays(int add);

/* @section mutex */

/* A mutual-exclusion lock, not recursive, that remembers which thread holds
** it. *out holds one reference for the caller.
** `self` below is the caller's ffipar_self_id() + 1. The caller passes it
** (the Lua side reads it once per state) because ffipar_self_id costs a
** __tls_get_addr call, and the holder check runs on every lock and unlock;
** a wrong `self` defeats the holder check but cannot corrupt memory, and
** self <= 0 gets FFIPAR_EINVAL. */
typedef struct ffipar_mutex ffipar_mutex;
int  ffipar_mutex_new(ffipar_mutex **out);
/* Take the lock, waiting up to `timeout`. FFIPAR_OK (now held by `self`),
** _ETIMEOUT, _ECANCELLED (a cancelled worker), or _EBUSY when `self`
** already holds it (waiting would deadlock). */
int  ffipar_mutex_lock(ffipar_mutex *m, int self, double timeout);
/* Take the lock if it is free: 1 taken, 0 held by some thread (`self` too). */
int  ffipar_mutex_trylock(ffipar_mutex *m, int self);
/* Release the lock: FFIPAR_OK, or _EPERM (nothing changed) when `self` does
** not hold it. Wakes one waiter. */
int  ffipar_mutex_unlock(ffipar_mutex *m, int self);
/* The ffipar_self_id() of the holding thread, or -1 when free. A snapshot,
** for error messages. */
int  ffipar_mutex_owner(const ffipar_mutex *m);


/* @section cond */

/* A condition variable, used with an ffipar_mutex. *out holds one
** reference for the caller. */
typedef struct ffipar_cond ffipar_cond;
int  ffipar_cond_new(ffipar_cond **out);
/* Release `m` (held by `self`, as for ffipar_mutex_lock), wait for a
** signal, then take `m` again before returning, whatever the outcome; the
** re-lock waits as long as it must, even when the worker is cancelled.
** FFIPAR_OK (signalled, or a spurious wake: re-check the condition),
** _ETIMEOUT, _ECANCELLED, or _EPERM (nothing done) when `self` does not
** hold `m`. */
int  ffipar_cond_wait(ffipar_cond *c, struct ffipar_mutex *m, int self,
                      double timeout);
/* Wake one waiter / every waiter (none is fine). Need not hold the mutex. */
void ffipar_cond_signal(ffipar_cond *c);
void ffipar_cond_broadcast(ffipar_cond *c);


/* @section barrier */

/* A reusable barrier for `n` threads, 1 <= n <= 65535 (else FFIPAR_EINVAL).
** *out holds one reference for the caller. */
typedef struct ffipar_barrier ffipar_barrier;
int  ffipar_barrier_new(ffipar_barrier **out, int n);
/* Arrive and wait until n threads have arrived in this round. Returns 1 in
** exactly one thread of the round (the last to arrive), 0 in the others;
** _ETIMEOUT or _ECANCELLED when the caller gave up before the round
** completed (it is then no longer counted in the round). */
int  ffipar_barrier_wait(ffipar_barrier *b, double timeout);
/* n, as given to ffipar_barrier_new. */
int  ffipar_barrier_count(const ffipar_barrier *b);


/* @section semaphore */

/* A counting semaphore with an initial count 0 <= n <= 2^31 - 1 (else
** FFIPAR_EINVAL). *out holds one reference for the caller. */
typedef struct ffipar_semaphore ffipar_semaphore;
int  ffipar_semaphore_new(ffipar_semaphore **out, int64_t n);
/* Take one unit, waiting up to `timeout` for the count to be > 0.
** FFIPAR_OK, _ETIMEOUT or _ECANCELLED (nothing taken). */
int  ffipar_semaphore_acquire(ffipar_semaphore *s, double timeout);
/* Give back k >= 1 units and wake up to k waiters. FFIPAR_OK, or
** _EINVAL (nothing changed) when the count would exceed 2^31 - 1. */
int  ffipar_semaphore_release(ffipar_semaphore *s, int64_t k);
/* The count now (a snapshot). */
int64_t ffipar_semaphore_count(const ffipar_semaphore *s);


/* @section atomic */

/* A shared int64_t. Values come back as doubles so that Lua gets plain
** numbers (exact up to 2^53). All operations are sequentially consistent.
** *out holds one reference for the caller. */
typedef struct ffipar_atomic ffipar_atomic;
int    ffipar_atomic_new(ffipar_atomic **out, int64_t init);
double ffipar_atomic_load(const ffipar_atomic *a);
void   ffipar_atomic_store(ffipar_atomic *a, int64_t v);
/* add, sub and exchange return the value held before (as C11 does). */
double ffipar_atomic_add(ffipar_atomic *a, int64_t v);
double ffipar_atomic_sub(ffipar_atomic *a, int64_t v);
double ffipar_atomic_exchange(ffipar_atomic *a, int64_t v);
/* Store `desired` if the value is `expected`: 1 stored, 0 not. */
int    ffipar_atomic_cas(ffipar_atomic *a, int64_t expected, int64_t desired);
/* The exact value, for values beyond 2^53. */
int64_t ffipar_atomic_load64(const ffipar_atomic *a);

/* The same operations on naturally aligned shared memory (par.atomics):
** int32_t, int64_t and double cells. A double add is a CAS loop. */
double ffipar_atomics_load_i32(int32_t *p);
void   ffipar_atomics_store_i32(int32_t *p, int32_t v);
double ffipar_atomics_add_i32(int32_t *p, int32_t v);
double ffipar_atomics_exchange_i32(int32_t *p, int32_t v);
int    ffipar_atomics_cas_i32(int32_t *p, int32_t expected, int32_t desired);
double ffipar_atomics_load_i64(int64_t *p);
void   ffipar_atomics_store_i64(int64_t *p, int64_t v);
double ffipar_atomics_add_i64(int64_t *p, int64_t v);
double ffipar_atomics_exchange_i64(int64_t *p, int64_t v);
int    ffipar_atomics_cas_i64(int64_t *p, int64_t expected, int64_t desired);
double ffipar_atomics_load_f64(double *p);
void   ffipar_atomics_store_f64(double *p, double v);
double ffipar_atomics_add_f64(double *p, double v);
double ffipar_atomics_exchange_f64(double *p, double v);
/* Compares the bits: 0.0 and -0.0 differ, a NaN can match itself. */
int    ffipar_atomics_cas_f64(double *p, double expected, double desired);


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
/* The color of the string `name` (len bytes), and one reference to it: the
** same color in every thread for the same bytes while anyone holds a
** reference. Negative (FFIPAR_ENOMEM) when out of memory. Any thread. */
double ffipar_gate_color(const char *name, size_t len);
/* Drop one reference taken by ffipar_gate_color; the last one frees the
** string's entry (the string may get another color after that). */
void   ffipar_gate_color_release(const char *name, size_t len);
/* How many strings have a color now (held by someone). */
int64_t ffipar_gate_colors(void);
/* 1 when the calling thread is inside some gate with `color`, else 0. */
int    ffipar_gate_holds_color(double color);
/* A snapshot, into out[8]: entries, waits (times a thread queued), color
** switches, threads inside, threads waiting, groups queued, closed (0/1),
** the color of the word. Takes the gate's internal lock briefly. */
void   ffipar_gate_stats(ffipar_gate *g, int64_t *out);


/* @section channel */

/* A bounded queue with many producers and many consumers (Vyukov's ring:
** a sequence number per slot, no lock on the fast path). Items are fixed-size
** byte records copied in and out: a typed channel's ctype, or, for untyped
** channels, one ffipar_value. Blocking calls sleep in futex_wait, so they
** honour timeouts and the calling worker's cancellation. */
typedef struct ffipar_channel ffipar_channel;

/* A reusable byte buffer of an untyped channel: `cap` bytes at `data`. Each
** slot of an untyped channel owns one (or none); an item of up to
** FFIPAR_BUF_MAX bytes is copied into its slot's buffer, and the pop hands
** that buffer to the popper in exchange for the popper's spare, so steady
** traffic allocates nothing. Owned by one holder at a time, never shared. */
typedef struct ffipar_channel_buf {
  char *data;
  size_t cap;
} ffipar_channel_buf;
/* A buffer of `cap` bytes (1 .. FFIPAR_BUF_MAX), or NULL (out of memory or
** a bad cap). */
ffipar_channel_buf *ffipar_channel_buf_new(size_t cap);
void ffipar_channel_buf_free(ffipar_channel_buf *b);   /* NULL: nothing */
/* Buffers allocated now, process-wide (for tests: a count that must return). */
int64_t ffipar_channel_bufs_live(void);

/* 1 when data[0..n) is a table as string.buffer encodes it (LuaJIT's
** documented serialization format) whose keys and values are all nil,
** booleans, numbers or strings: no sub-table, cdata, light userdata or
** dictionary reference. 0 for anything else, malformed or cut short too.
** Such a table is plain (wire.plain) with no Lua walk. */
int ffipar_channel_flat(const char *data, size_t n);

/* One untyped item, filled by Lua: a number, a boolean, a short string kept
** inline (VSTR), a table of 1 to FFIPAR_VNUMS_MAX numbers at keys 1..len
** and nothing else, inline as those numbers (VNUMS), a plain value as string.buffer encodes it in up to
** FFIPAR_VSTR_MAX bytes, inline too (VSENC), bytes copied into the slot's buffer (a string, VBSTR, or a plain
** value as string.buffer encodes it, VBENC, of up to FFIPAR_BUF_MAX bytes),
** or a message (owned by the channel while queued): a codec message (VMSG),
** a longer string's bytes (VLSTR) or a longer encoded plain value (VENC).
** VMSG, VLSTR and VENC own u.msg.
**   Push of VBSTR/VBENC: u.b.data holds `len` bytes; u.b.buf is the pusher's
** spare buffer, cap >= len, a reserve: a slot whose buffer is missing or too
** small gets a new one, and takes the spare only when there is no memory
** for it. On FFIPAR_OK u.b.buf is the spare the pusher keeps: its own, or
** then the slot's old buffer (or NULL).
**   Pop: tag VSPARE on entry offers u.b.buf (a buffer or NULL) to the
** channel; it is taken only when the item popped is VBSTR/VBENC, and then
** u.b.buf (and u.b.data, its bytes) is the item's buffer, the caller's now.
** Any other item leaves the offered buffer with the caller.
** This is a transfer record, not an object, so its layout is public. */
enum {
  FFIPAR_VNUM = 1, FFIPAR_VBOOL = 2, FFIPAR_VSTR = 3, FFIPAR_VMSG = 4,
  FFIPAR_VLSTR = 5, FFIPAR_VENC = 6, FFIPAR_VBSTR = 7, FFIPAR_VBENC = 8,
  FFIPAR_VSPARE = 9, FFIPAR_VSENC = 10, FFIPAR_VNUMS = 11,
  FFIPAR_VSTR_MAX = 40, FFIPAR_VNUMS_MAX = 5, FFIPAR_BUF_MAX = 4096
};
typedef struct ffipar_value {
  uint32_t tag;          /* FFIPAR_V* */
  uint32_t len;          /* VSTR, VSENC, VBSTR, VBENC: bytes; VBOOL: 0 or 1;
                         ** VNUMS: numbers */
  union {
    double n;
    double d[5];         /* VNUMS */
    ffipar_msg *msg;
    char s[40];
    struct { const char *data; ffipar_channel_buf *buf; } b;
  } u;
} ffipar_value;

/* A new open channel of `cap` items (1 <= cap <= 2^24) of `size` bytes
** (1 .. 2^20) aligned to `align` (a power of two <= 64); `untyped` != 0 makes
** items ffipar_value (size and align are then ignored) and lets the channel
** free queued messages when it is destroyed. The ring (cap slots of about
** size + 8 bytes) must fit in 1 GiB. *out holds one reference.
** FFIPAR_EINVAL (out of these bounds) or _ENOMEM. */
int  ffipar_channel_new(ffipar_channel **out, int64_t cap, size_t size,
                        size_t align, int untyped);
/* Copy one item (size bytes at `item`) in, waiting for room up to `timeout`.
** FFIPAR_OK (the channel owns the item now; for a VMSG.. the message;
** VBSTR/VBENC: see ffipar_value), _ETIMEOUT (full), _ECLOSED, _ECANCELLED
** (the caller keeps the item), _EINVAL (a VBSTR/VBENC item over
** FFIPAR_BUF_MAX bytes or without a spare buffer that holds it). `item` is
** const for typed channels (a const cdata may be pushed); an untyped
** VBSTR/VBENC item gets its u.b.buf written back, so it must be writable. */
int  ffipar_channel_push(ffipar_channel *c, const void *item, double timeout);
/* Copy one item out into `out` (size bytes), waiting up to `timeout`.
** FFIPAR_OK (the caller owns the item, e.g. a VMSG's message), _ETIMEOUT,
** _ECLOSED (closed and drained), _ECANCELLED. */
int  ffipar_channel_pop(ffipar_channel *c, void *out, double timeout);
/* Up to `n` items at once: push copies items[0..k) in order, pop copies
** out into out[0..k); both wait (up to `timeout`) only while none can move,
** and return k >= 1, or a negative code as above when k would be 0. */
int  ffipar_channel_push_many(ffipar_channel *c, const void *items, int n,
                              double timeout);
int  ffipar_channel_pop_many(ffipar_channel *c, void *out, int n,
                             double timeout);
/* Close: later pushes fail with _ECLOSED; pops drain what is queued, then
** fail with _ECLOSED. Wakes every waiter, selectors too. Idempotent. */
void ffipar_channel_close(ffipar_channel *c);
int  ffipar_channel_closed(const ffipar_channel *c);
/* Items queued now (a snapshot), the capacity, and the item size. */
int64_t ffipar_channel_len(const ffipar_channel *c);
int64_t ffipar_channel_cap(const ffipar_channel *c);
size_t  ffipar_channel_size(const ffipar_channel *c);
/* A readiness descriptor for event loops: an eventfd, made on the first
** call (later calls give the same one), readable while a pop with timeout 0
** would return an item or _ECLOSED (an item queued when it is made counts).
** It is reset by a pop that leaves the channel empty or finds it empty
** (_ETIMEOUT), never once the channel is closed. With several consumers it
** may be readable when another has just taken the item: a pop(0) that
** finds nothing resets it. Closed with the object, or earlier by
** ffipar_channel_fd_close: never close it yourself. FFIPAR_OK; _ESYS when
** no descriptor can be made; _ECLOSED after ffipar_channel_fd_close. */
int  ffipar_channel_fd(ffipar_channel *c, int *out);
/* Close the readiness descriptor now (stop polling it first); later
** ffipar_channel_fd calls return _ECLOSED. Always FFIPAR_OK. */
int  ffipar_channel_fd_close(ffipar_channel *c);
/* Wait until one of chs[0..n) has an item or is closed and drained, up to
** `timeout`. Items win over closed channels; the scan starts at a rotating
** index so that no channel starves. FFIPAR_OK: the item is popped into
** `out` (big enough for every channel's item) and *which is its index;
** _ECLOSED: *which is a closed, drained channel; _ETIMEOUT; _ECANCELLED;
** _ENOMEM (n > 16 needs a small allocation). */
int  ffipar_channel_select(ffipar_channel *const *chs, int n, void *out,
                           int *which, double timeout);


/* @section pool needs thread */

/* A pool: n long-lived workers, each with one LuaJIT state kept across
** tasks, taking tasks from one FIFO queue. A task is an ffipar_thread
** object (join, status, cancel work as for spawn) that a pool worker runs. */
typedef struct ffipar_pool ffipar_pool;

/* A pool with no workers yet; *out holds one reference. Each worker holds
** one too; when a release leaves only the workers' references, the pool is
** closed (its workers finish the queue and exit). */
int  ffipar_pool_new(ffipar_pool **out, const char *path, const char *cpath);
/* Start one worker. With an init payload, the worker first runs it as a
** task and *init_out receives its handle (one reference); with NULL, no
** init runs and *init_out is untouched. */
int  ffipar_pool_start(ffipar_pool *p, ffipar_msg *init, ffipar_thread **init_out);
/* Queue a task (takes ownership of payload); *out is its handle.
** FFIPAR_ECLOSED once the pool is closed. */
int  ffipar_pool_submit(ffipar_pool *p, ffipar_msg *payload, ffipar_thread **out);
/* No more tasks: workers finish the queue, then exit. Idempotent. */
void ffipar_pool_close(ffipar_pool *p);
/* Wait until every worker has exited (after close). */
int  ffipar_pool_wait(ffipar_pool *p, double timeout);
/* Tasks queued and not yet taken. */
int  ffipar_pool_queued(ffipar_pool *p);
/* 1 once the pool is closed. */
int  ffipar_pool_closed(ffipar_pool *p);
/* 1 when the calling thread is one of p's workers (running one of its tasks). */
int  ffipar_pool_mine(const ffipar_pool *p);

/* Chunks of [0, n) for parallel loops. `job` is two int64_t in shared
** memory: the next index and an abort flag. claim returns the start of the
** next chunk of `step`, or -1 when [0, n) is used up or the job aborted. */
double ffipar_pool_claim(int64_t *job, double step, double n);
void   ffipar_pool_abort(int64_t *job);


/* @section share */
/* A read-only snapshot of a Lua table, shared once (par.share): the
** encoded message, written once at creation and never changed, so states
** read it without locks, each decoding it once. */
typedef struct ffipar_share ffipar_share;

/* A new snapshot owning `msg` (freed on failure too) of `n` entries; *out
** holds one reference. FFIPAR_EINVAL (msg NULL, n < 0) or _ENOMEM. */
int  ffipar_share_new(ffipar_share **out, ffipar_msg *msg, int64_t n);
/* The message (owned by the snapshot; do not free). */
const ffipar_msg *ffipar_share_msg(const ffipar_share *s);
/* How many entries the table had. */
int64_t ffipar_share_len(const ffipar_share *s);
/* Count one more state that decoded it; returns the new count. */
int64_t ffipar_share_decoded(ffipar_share *s);
/* How many states decoded it so far. */
int64_t ffipar_share_decodes(const ffipar_share *s);
/* Count k more chunks decoded (a snapshot of plain values is encoded in
** chunks of entries, each decoded by the states that need it); returns the
** new count. */
int64_t ffipar_share_chunks_decoded(ffipar_share *s, int64_t k);
/* How many chunks were decoded so far, all states together. */
int64_t ffipar_share_chunk_decodes(const ffipar_share *s);
/* How many references exist now (a state's cache drops its copy when its
** own reference is the only one left). */
int64_t ffipar_share_refs(const ffipar_share *s);

/* A stream: a big table argument crossing while the receiver decodes it,
** or the parts of a one-call pool:best that its workers claim and score.
** One sender puts the parts (chunks of entries) one by one, then ends it
** with a verdict; receivers (any number: parts never change once put) wait
** for each part. A new stream of at most
** `cap` parts, for a table of `n` entries, `len` of them 1..len. */
enum { FFIPAR_STREAM_DONE = 1,   /* the parts are the whole table */
       FFIPAR_STREAM_WHOLE = 2,  /* ignore the parts: the value is `whole` */
       FFIPAR_STREAM_ABANDONED = 3 };
int  ffipar_share_stream(ffipar_share **out, int64_t cap, int64_t n, int64_t len);
/* Publish the next part (owned from here, freed on failure too).
** FFIPAR_EINVAL: not a stream, full, or ended. */
int  ffipar_share_put(ffipar_share *s, ffipar_msg *m);
/* End with a verdict; `whole` (owned, NULL unless FFIPAR_STREAM_WHOLE). */
int  ffipar_share_end(ffipar_share *s, int32_t verdict, ffipar_msg *whole);
/* Wait until part i is published or the stream ended (then FFIPAR_OK), or
** FFIPAR_ETIMEOUT / FFIPAR_ECANCELLED. */
int  ffipar_share_wait(ffipar_share *s, int64_t i, double timeout);
int32_t ffipar_share_verdict(const ffipar_share *s);
int64_t ffipar_share_nparts(const ffipar_share *s);
/* Part i, NULL if not published; the whole value, NULL unless WHOLE. */
const ffipar_msg *ffipar_share_part(const ffipar_share *s, int64_t i);
const ffipar_msg *ffipar_share_whole(const ffipar_share *s);
int64_t ffipar_share_arraylen(const ffipar_share *s);

/* A snapshot made at its first use (par.share(t, { lazy = true })): no
** message yet. The state that shared it then either makes it whole
** (ffipar_share_make), or opens it as the parts stream of a one-call
** pool:best, ends it FFIPAR_STREAM_DONE and seals it: the parts the workers
** scored, the caller's own entries as more parts, and an index. Both are
** the owner's, before the object is published (the workers of the call,
** which decode the parts, are done by the seal). */
int  ffipar_share_lazy(ffipar_share **out);
/* A lazy snapshot gets its whole message (owned, freed on failure too) of
** `n` entries; its parts, if a pool:best failed to seal them, are freed.
** FFIPAR_EINVAL: not lazy, already made or sealed. */
int  ffipar_share_make(ffipar_share *s, ffipar_msg *msg, int64_t n);
/* A lazy snapshot not yet made becomes a stream of at most `cap` parts for
** its `n` entries. FFIPAR_EINVAL: not lazy, or already made or opened. */
int  ffipar_share_open(ffipar_share *s, int64_t cap, int64_t n);
/* Seal an opened snapshot ended FFIPAR_STREAM_DONE: the k messages of
** `more` are appended as parts and `index` describes them all (all owned,
** freed on failure too). FFIPAR_EINVAL: not such a snapshot; _ENOMEM. */
int  ffipar_share_seal(ffipar_share *s, ffipar_msg **more, int64_t k, ffipar_msg *index);
/* The index of a sealed snapshot, NULL before (or for any other). */
const ffipar_msg *ffipar_share_index(const ffipar_share *s);

#pragma GCC visibility pop
