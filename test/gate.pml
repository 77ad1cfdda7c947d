/*
** gate.pml -- a Promela model of the color gate as csrc/gate.c implements
** it, checked with spin (`make model`; the suite runs a bounded safety
** check, test/proc_gate_model.sh).
**
** Modelled, one spin step per C atomic operation:
**  - the state word (color, CLOSED, count): the fast path's load and CAS
**    are separate steps (FAST_TRIES tries; a failed CAS reloads, as C's
**    compare_exchange does); leave's fetch_sub, the slow path's fetch_or
**    (close) and fetch_and (reopen) are single steps; count saturation
**    (MAXC) is checked as in C;
**  - the internal lock m: a FIFO ticket lock (tickets modulo NPROC + 1);
**  - under m (one step each, since only holders of m touch them): the FIFO
**    of groups, group slots from a free pool (a slot is reused as soon as
**    its group is admitted, by any color), each with a 1-bit generation
**    word -- the futex word -- so any ABA on it would show;
**  - the direct attempt (DIRECT_TRIES), joining a group, closing,
**    admitting a drained gate, waiting on the group's word, and (with
**    TIMEOUTS) try-only entries and a timeout or cancellation at any
**    moment of a wait, followed by the withdrawal;
**  - leave: fetch_sub, then for the last one out of a closed gate: m,
**    reload, admit the head group.
** Not modelled: memory orders (spin is sequentially consistent; the
** orders are argued in gate.c and checked by the TSan run of the stress
** test), the nesting bookkeeping (thread-local, no sharing), statistics.
**
** Ghost state: held[c] = threads of color c counted in the word; incs[c] =
** threads of color c inside their section; want[p] = thread p is trying
** to enter. Checked: the monitor's invariants below (mutual exclusion,
** count = credited threads, credited threads have the word's color,
** "queue non-empty <=> CLOSED" while m is free, and no stranded gate:
** while m is free, a closed gate is drained only while the leaver that
** drained it is on its way to admit the next group), no invalid end state
** (deadlock), and with -a -f the LTL properties live* (every thread that
** wants in gets in, under weak fairness).
**
** Mutants (each must make spin report an error): -DMUTANT_COLOR (the
** direct attempt ignores the color: mutual exclusion), -DMUTANT_NOREOPEN
** with -DTIMEOUTS (the last waiter withdraws and leaves the gate closed),
** -DMUTANT_NOCLOSE (never close: a busy color starves the others; the
** CLOSED invariant reports it first).
**
** Threads: NPROC of them; thread i has color col[i]. Default: two of
** color 1 and one of color 2. -DFOUR adds a colorless thread (color 3).
*/

#ifdef FOUR
#define NPROC 4
#else
#define NPROC 3
#endif
#define NCOL 4              /* colors 0..3; 0 is the initial, nobody's color */
#define NSLOTS NPROC        /* a thread waits in at most one group */
#define TK (NPROC + 1)      /* ticket modulus: more than the lock's users */
#ifndef MAXC
#define MAXC NPROC          /* count limit (C: 0xFFFF); -DMAXC=1 saturates */
#endif
#ifndef FAST_TRIES
#define FAST_TRIES 2        /* C: 4; the bound only matters for fairness */
#endif
#ifndef DIRECT_TRIES
#define DIRECT_TRIES 1      /* C: 8 */
#endif

/* the state word */
byte color = 0;
bit closed = 0;
byte cnt = 0;

/* the ticket lock m */
byte next = 0;
byte serving = 0;

/* under m: the FIFO of groups, and the group slots */
byte q[NSLOTS];
byte qlen = 0;
bit used[NSLOTS];
byte gcolor[NSLOTS];
byte gn[NSLOTS];
bit gen[NSLOTS];            /* read by waiters outside m */

/* ghost */
byte held[NCOL];
byte incs[NCOL];
bit want[NPROC];
byte pending;               /* leavers that emptied a closed gate, not done */
byte col[NPROC];

#define MFREE (serving == next)
#define INV ( \
  (incs[1] == 0 || (incs[2] == 0 && incs[3] == 0)) && \
  (incs[2] == 0 || incs[3] == 0) && \
  incs[3] <= 1 && \
  cnt == held[0] + held[1] + held[2] + held[3] && \
  (held[1] == 0 || color == 1) && (held[2] == 0 || color == 2) && \
  (held[3] == 0 || color == 3) && \
  incs[1] <= held[1] && incs[2] <= held[2] && incs[3] <= held[3] && \
  (!MFREE || ((qlen > 0) == closed)) && \
  (!MFREE || !closed || cnt > 0 || pending > 0))

active proctype monitor()
{
  atomic { !INV -> assert(INV) }
}

inline lock()
{
  atomic { t = next; next = (next + 1) % TK };
  (serving == t)
}

inline unlock()
{
  serving = (serving + 1) % TK
}

/* Admit the head group; m held, the gate closed and drained (ls_* is the
** word as the caller read it). The CAS cannot fail: assert it. */
inline admit_head()
{
  d_step {
    h = q[0];
    i = 0;
    do
    :: i + 1 < qlen -> q[i] = q[i + 1]; i++
    :: else -> break
    od;
    q[qlen - 1] = 0;
    qlen--;
    i = 0
  };
  d_step {
    assert(color == ls_col && closed == ls_cl && cnt == ls_cnt && cnt == 0 && closed);
    color = gcolor[h];
    cnt = gn[h];
    closed = (qlen > 0);
    held[gcolor[h]] = held[gcolor[h]] + gn[h]
  };
  d_step {
    gen[h] = 1 - gen[h];    /* release bump; FUTEX_WAKE is implied */
    gn[h] = 0;
    gcolor[h] = 0;
    used[h] = 0;
    h = 0
  }
}

inline load()
{
  d_step { ls_col = color; ls_cl = closed; ls_cnt = cnt }
}

proctype thread(byte me)
{
  byte c = col[me];
  byte t, i, h, slot, tries;
  byte ls_col, ls_cnt;
  bit ls_cl, ok, seen;

outside:
  want[me] = 1;

  /* ---- fast path ---- */
  tries = 0;
  load();
  do
  :: tries < FAST_TRIES && ls_col == c && !ls_cl && ls_cnt < MAXC ->
     d_step {
       if
       :: color == ls_col && closed == ls_cl && cnt == ls_cnt ->
          cnt++; held[c]++; ok = 1
       :: else -> ls_col = color; ls_cl = closed; ls_cnt = cnt; ok = 0
       fi
     };
     if
     :: ok -> ok = 0; goto inside
     :: else -> tries++
     fi
  :: else -> break
  od;

  /* ---- slow path ---- */
  lock();
  tries = 0;
  do
  :: tries < DIRECT_TRIES && qlen == 0 ->
     load();
     if
#ifdef MUTANT_COLOR    /* bug: an open gate of any color lets us in */
     :: ls_cnt == 0 || (!ls_cl && ls_cnt < MAXC) ->
#else
     :: ls_cnt == 0 || (ls_col == c && !ls_cl && ls_cnt < MAXC) ->
#endif
        d_step {
          if
          :: color == ls_col && closed == ls_cl && cnt == ls_cnt ->
             if
             :: ls_cnt == 0 -> color = c; cnt = 1
             :: else -> cnt++
             fi;
             held[c]++; ok = 1
          :: else -> ok = 0
          fi
        };
        if
        :: ok -> ok = 0; unlock(); goto inside
        :: else -> tries++
        fi
     :: else -> break
     fi
  :: else -> break
  od;
#ifdef TIMEOUTS
  if
  :: true -> unlock(); goto gaveup          /* try-only (timeout 0) */
  :: true -> skip
  fi;
#endif
  /* join the first non-full group of my color, or a new one at the tail */
  atomic {
    slot = NSLOTS;
    i = 0;
    do
    :: i < qlen && gcolor[q[i]] == c && gn[q[i]] < MAXC -> slot = q[i]; break
    :: i < qlen && !(gcolor[q[i]] == c && gn[q[i]] < MAXC) -> i++
    :: i >= qlen -> break
    od;
    if
    :: slot == NSLOTS ->
       i = 0;
       do
       :: used[i] -> i++
       :: !used[i] -> break
       od;
       slot = i;
       used[slot] = 1;
       gcolor[slot] = c;
       gn[slot] = 0;
       q[qlen] = slot;
       qlen++
    :: else -> skip
    fi;
    gn[slot]++;
    seen = gen[slot];
    i = 0
  };
  /* close: fetch_or, wait-free */
#ifdef MUTANT_NOCLOSE  /* bug: never close (PyPy's gate): a color starves */
  d_step { ls_col = color; ls_cl = closed; ls_cnt = cnt };
#else
  d_step { closed = 1; ls_col = color; ls_cl = 1; ls_cnt = cnt };
#endif
  if
  :: ls_cnt == 0 -> admit_head()
  :: else -> skip
  fi;
  unlock();

  /* wait on the group's word */
  if
  :: gen[slot] != seen -> goto inside
#ifdef TIMEOUTS
  :: true ->                                /* timeout or cancellation */
     lock();
     if
     :: gen[slot] != seen -> unlock(); goto inside   /* admitted meanwhile */
     :: else -> skip
     fi;
     d_step {                                /* withdraw */
       gn[slot]--;
       if
       :: gn[slot] == 0 ->
          i = 0;
          do
          :: q[i] != slot -> i++
          :: q[i] == slot -> break
          od;
          do
          :: i + 1 < qlen -> q[i] = q[i + 1]; i++
          :: else -> break
          od;
          q[qlen - 1] = 0;
          qlen--;
          used[slot] = 0;
          gcolor[slot] = 0
       :: else -> skip
       fi;
       i = 0
     };
     if
#ifdef MUTANT_NOREOPEN /* bug: the last waiter withdraws, the gate stays closed */
     :: qlen == 0 -> skip
#else
     :: qlen == 0 -> closed = 0              /* fetch_and: reopen */
#endif
     :: else ->
        load();
        if
           :: ls_cnt == 0 -> admit_head()   /* sooner; the leaver would too */
        :: else -> skip
        fi
     fi;
     unlock();
     goto gaveup
#endif
  fi;

inside:
  atomic {
    want[me] = 0;
    incs[c]++;
    assert(color == c);
    slot = 0; seen = 0; tries = 0; ls_col = 0; ls_cl = 0; ls_cnt = 0
  };
  /* the section */
  incs[c]--;
  /* leave: fetch_sub */
  d_step {
    ls_col = color; ls_cl = closed; ls_cnt = cnt; cnt--; held[c]--;
    if
    :: ls_cl && ls_cnt == 1 -> pending++
    :: else -> skip
    fi
  };
  if
  :: ls_cl && ls_cnt == 1 ->
     lock();
     load();
     if
     :: ls_cl && ls_cnt == 0 && qlen > 0 -> admit_head()
     :: else -> skip
     fi;
     unlock();
     pending--
  :: else -> skip
  fi;
  d_step { ls_col = 0; ls_cl = 0; ls_cnt = 0; t = 0 };
  goto outside;

#ifdef TIMEOUTS
gaveup:
  atomic {
    want[me] = 0;
    slot = 0; seen = 0; tries = 0; ls_col = 0; ls_cl = 0; ls_cnt = 0; t = 0
  };
  goto outside
#endif
}

init {
  atomic {
    col[0] = 1; col[1] = 1; col[2] = 2;
#ifdef FOUR
    col[3] = 3;
#endif
    run thread(0); run thread(1); run thread(2);
#ifdef FOUR
    run thread(3);
#endif
  }
}

/* Starvation freedom (with -a -f): a thread that wants in gets in. */
ltl live0 { [] (want[0] -> <> !want[0]) }
ltl live2 { [] (want[2] -> <> !want[2]) }
