-- ffipar.share: par.share(t), a read-only snapshot of a Lua table that
-- crosses by reference and is decoded once per Lua state.
--
--   local records = par.share(t)         -- t encoded once, here, now
--   pool:best(records, score)             -- each worker decodes it on first use
--   par.spawn(function(r) local t = r:get() ... end, records)
--
-- The snapshot is t as it was when shared: later changes to t are never
-- seen through it (share again to publish them). Each state's copy is
-- shared by everything that runs in that state (a pool worker's tasks);
-- it is read-only by contract. A state drops its copy when it next decodes
-- a snapshot and finds that nothing else refers to the old one.
--
-- A table of plain values (wire.plain: no functions, handles, cdata or
-- shared sub-tables) is encoded in chunks of entries, so that a state
-- decodes only the chunks it needs (pool:best: the chunks a worker scores),
-- each once. The message is then
--   "C" .. the index's offset (16 digits) .. chunk 1 .. chunk 2 ... index
-- where chunk j is the string.buffer encoding of { k1, v1, k2, v2, ... }
-- for the entries (j - 1) * size + 1 .. j * size in the sharing state's
-- pairs order, and the index { n = entries, size = size, offs = { chunk
-- offsets from the start, then the end } }. Any other table is one wire
-- message of { t, keys }, decoded whole by each state that uses it.
--
-- par.share(t, { lazy = true }) makes the snapshot at its first use instead.
-- When that is a pool:best, the one-call search makes it on the way: the
-- object is the call's parts stream, each worker keeps the parts it
-- decoded, and the caller then adds the entries it scored itself as more
-- parts and seals the object with an index { n = entries, g0s = { the
-- position of each part's first entry }, ms = { its entry count } } (a
-- snapshot "in parts"; each part is { keys, vals, g0 }). Any other first
-- use makes it whole, as par.share(t) would have.
local ffi = require "ffi"
local lib = require "ffipar.lib"
local codec = require "ffipar.codec"
local C = lib.C
lib.declare("share")

local M = {}

local istype = ffi.istype
local share_p = ffi.typeof("struct ffipar_share *")
local uintptr_t = ffi.typeof("uintptr_t")
local bytes_p = ffi.typeof("const uint8_t *")
local buffer = require "string.buffer"
local wire = require "ffipar.wire"
local tnew = require "table.new"
local dbuf = buffer.new()
local CHUNKED = string.byte("C")
-- Entries per chunk: at least MIN_CHUNK, and at most MAX_CHUNKS chunks.
local MIN_CHUNK, MAX_CHUNKS = 64, 256
M.MAX_CHUNKS = MAX_CHUNKS

local function bad_self(fname, v)
  lib.bad_self(fname, "share", "sh", v)
end

-- This state's view of each snapshot, by address: { ref = the cache's own
-- reference, h = the snapshot, t = the table, keys = its keys in the
-- sharing state's pairs order, vals = the values in that order }; for a
-- chunked snapshot also p (its bytes), n, size, offs (the index), have
-- (the chunks decoded here, by number from 0) and order (those numbers in
-- the order they were decoded). In the state that shared it, the entry
-- holds the caller's own keys and values and no reference: the handle
-- par.share returned removes it when collected (the address cannot be
-- reused before); a lazy snapshot not made yet has { pending = t } there
-- (and opened = true once a pool:best began to make it in parts). A
-- snapshot in parts has g0s and ms (its index) instead of size and offs;
-- building = true marks the view a worker keeps while the pool:best that
-- makes the snapshot runs.
local cache = {}

local function addr_of(h)
  return tonumber(ffi.cast(uintptr_t, h))
end

-- Forget the snapshots nothing else in the process refers to.
local function sweep()
  for a, e in pairs(cache) do
    if e.ref and C.ffipar_share_refs(e.h) == 1 then cache[a] = nil end
  end
end

-- The value encoded in len plain bytes at p (string.buffer, no handles).
local function decode_at(p, len)
  dbuf:set(p, len)
  local x = dbuf:decode()
  dbuf:reset()
  return x
end

-- The value of a message of plain data.
local function plain_decode(m)
  local p = C.ffipar_msg_data(m, lib.lenp)
  return decode_at(p, lib.lenp[0])
end

-- View e of a snapshot in parts takes its index x (see the top).
local function take_index(e, x)
  e.n, e.g0s, e.ms, e.nchunks = x.n, x.g0s, x.ms, #x.g0s
  return e
end

-- A new view of snapshot h: a chunked one decodes its index only; any
-- other is decoded whole.
local function new_view(h)
  local idx = C.ffipar_share_index(h)
  if idx ~= nil then
    local x = plain_decode(idx)
    return take_index({ h = h, p = true, keys = tnew(x.n, 0), vals = tnew(x.n, 0), have = {}, order = {} }, x)
  end
  local msg = C.ffipar_share_msg(h)
  local p = ffi.cast(bytes_p, C.ffipar_msg_data(msg, lib.lenp))
  local len = tonumber(lib.lenp[0])
  if p[0] ~= CHUNKED then
    local r = codec.decode(msg)
    return { h = h, t = r[1], keys = r[2] }
  end
  local at = tonumber(ffi.string(p + 1, 16))
  local idx = decode_at(p + at, len - at)
  local n = idx.n
  return { h = h, p = p, n = n, size = idx.size, offs = idx.offs, nchunks = #idx.offs - 1,
    keys = tnew(n, 0), vals = tnew(n, 0), have = {}, order = {} }
end

-- This state's entry for h, made on first use; `once`: not kept (a
-- snapshot made for one call).
local function keep(a, h, e, once)
  if not once then
    -- The cache's reference, held as a void *: LuaJIT skips the finalizer
    -- of a metatyped pointer still alive when a worker's state closes.
    C.ffipar_obj_retain(h)
    e.ref = ffi.gc(ffi.cast("void *", h), C.ffipar_obj_release)
    e.h = ffi.cast(share_p, e.ref)
    cache[a] = e
  end
  return e
end

-- A worker's view kept while a pool:best made the snapshot in parts: once
-- sealed, it takes the index; if the snapshot was made whole instead, it
-- goes.
local function settle(a, h, e)
  local idx = C.ffipar_share_index(h)
  if idx ~= nil then
    e.building = nil
    return take_index(e, plain_decode(idx))
  end
  if C.ffipar_share_msg(h) ~= nil then
    cache[a] = nil
    return nil
  end
  return e
end

local function entry(h, once)
  local a = addr_of(h)
  local e = cache[a]
  if e and e.building then e = settle(a, h, e) end
  if e then
    if e.pending then error("ffipar: internal: a lazy snapshot used before it was made", 2) end
    return e
  end
  sweep()
  e = new_view(h)
  C.ffipar_share_decoded(h)
  return keep(a, h, e, once)
end
M.view = entry

-- Chunk j of view e is decoded here: counted, and first among the chunks
-- this state takes in the calls that follow (e.order).
local function decoded(e, j)
  e.have[j] = true
  e.order[#e.order + 1] = j
  C.ffipar_share_chunks_decoded(e.h, 1)
end

-- Part j of view e of a snapshot in parts, decoded here: its entries go to
-- their positions.
local function hold_part(e, j, keys, vals, g0)
  local ek, ev = e.keys, e.vals
  for q = 1, #keys do ek[g0 + q - 1], ev[g0 + q - 1] = keys[q], vals[q] end
  decoded(e, j)
end

--- In a worker of the pool:best that makes lazy snapshot h in parts: part i
-- (keys, vals, g0), just decoded here, is kept as the snapshot's.
function M.keep_part(h, n, i, keys, vals, g0)
  local a = addr_of(h)
  local e = cache[a]
  if not e then
    sweep()
    e = keep(a, h, { h = h, p = true, building = true, n = n, keys = tnew(n, 0), vals = tnew(n, 0),
      have = {}, order = {} }, false)
    C.ffipar_share_decoded(h)
  end
  hold_part(e, i, keys, vals, g0)
end

--- Chunk j (from 0) of a chunked view, decoded here if it was not yet;
-- returns the positions of its first and last entries.
function M.chunk(e, j)
  if e.g0s then
    local g0 = e.g0s[j + 1]
    if not e.have[j] then
      local c = plain_decode(C.ffipar_share_part(e.h, j))
      hold_part(e, j, c[1], c[2], g0)
    end
    return g0, g0 + e.ms[j + 1] - 1
  end
  local size = e.size
  local lo = j * size
  local hi = math.min(lo + size, e.n)
  if not e.have[j] then
    local offs = e.offs
    local c = decode_at(e.p + offs[j + 1], offs[j + 2] - offs[j + 1])
    local keys, vals = e.keys, e.vals
    for i = 1, hi - lo do keys[lo + i], vals[lo + i] = c[2 * i - 1], c[2 * i] end
    decoded(e, j)
  end
  return lo + 1, hi
end
local chunk = M.chunk

-- Every chunk of a chunked view decoded, and its table built.
local function whole(e)
  for j = 0, e.nchunks - 1 do chunk(e, j) end
  local keys, vals, t = e.keys, e.vals, tnew(0, e.n)
  for i = 1, e.n do t[keys[i]] = vals[i] end
  return t
end

-- The keys and values in the sharing state's pairs order (the sharing
-- state's own objects there; this state's copies elsewhere), all decoded.
local function entries_of(e)
  if e.p and not e.t then e.t = whole(e) end
  if not e.vals then
    local t, keys, vals = e.t, e.keys, {}
    for i = 1, #keys do vals[i] = t[keys[i]] end
    e.vals = vals
  end
  return e.keys, e.vals
end
M.entries_of = entries_of

function M.entries(h, once)
  return entries_of(entry(h, once))
end

--- The key and value at position i (from 1), decoding only its chunk.
function M.at(h, i)
  local e = entry(h)
  if e.g0s then
    -- the part that holds position i: parts cover 1..n without overlap
    if not e.sorted then
      local o = {}
      for j = 1, e.nchunks do o[j] = j - 1 end
      local g0s = e.g0s
      table.sort(o, function(x, y) return g0s[x + 1] < g0s[y + 1] end)
      e.sorted = o
    end
    local o, g0s, lo, hi = e.sorted, e.g0s, 1, e.nchunks
    while lo < hi do
      local mid = math.floor((lo + hi + 1) / 2)
      if g0s[o[mid] + 1] <= i then lo = mid else hi = mid - 1 end
    end
    chunk(e, o[lo])
  elseif e.p then
    chunk(e, math.floor((i - 1) / e.size))
  elseif not e.vals then
    entries_of(e)
  end
  return e.keys[i], e.vals[i]
end

local share = {}

--- The snapshot as a table in this state (decoded once per state, then the
-- same table every time): read it, do not change it.
function share:get()
  if not istype(share_p, self) or self == nil then bad_self("sh:get", self) end
  M.make(self, 3)
  local e = entry(self)
  if e.t == nil then
    if e.p then
      e.t = whole(e)
    else                           -- the sharing state keeps the entries, not the copy
      local v = new_view(self)
      C.ffipar_share_decoded(self)
      e.t = v.p and whole(v) or v.t
    end
  end
  -- In check mode, a strand that gets the table has it watched: a write to
  -- this state's copy would be lost (ffipar.check reports it).
  local check = package.loaded["ffipar.check"]
  if check and check.watching() then check.watch_table(e.t, "the table of a par.share snapshot (sh:get())") end
  return e.t
end

--- How many Lua states have decoded the snapshot so far, and how many
-- chunks they decoded, all together (0 for a snapshot that is not in
-- chunks); for tests and tuning.
function share:decodes()
  if not istype(share_p, self) or self == nil then bad_self("sh:decodes", self) end
  return tonumber(C.ffipar_share_decodes(self)), tonumber(C.ffipar_share_chunk_decodes(self))
end

ffi.metatype("struct ffipar_share", {
  __index = share,
  __len = function(h)
    if h == nil then bad_self("#sh", h) end
    local t = M.pending(h)
    if t then return wire.count(t) end
    return tonumber(C.ffipar_share_len(h))
  end,
  __tostring = function(h)
    if h == nil then return "ffipar.share: NULL" end
    if M.pending(h) then return "ffipar.share(lazy, not made yet): " .. lib.addr(h) end
    return ("ffipar.share(%d entries): %s"):format(tonumber(C.ffipar_share_len(h)), lib.addr(h))
  end,
})
codec.register_ctype(share_p, "share")

local out = ffi.new("ffipar_share *[1]")

-- The chunked message of a plain table's entries (see the top); returns
-- it and the number of chunks.
local function chunked(keys, vals, n, fname, level)
  local size = math.max(MIN_CHUNK, math.ceil(n / MAX_CHUNKS))
  local b = buffer.new()
  b:put("C", ("%16d"):format(0))
  local offs, m, c = {}, 0, {}
  for lo = 1, n, size do
    local hi = math.min(lo + size - 1, n)
    if hi - lo + 1 < size then c = {} end       -- the last chunk: no entries left over
    local j = 0
    for i = lo, hi do
      c[j + 1], c[j + 2] = keys[i], vals[i]
      j = j + 2
    end
    m = m + 1
    offs[m] = #b
    b:encode(c)
  end
  offs[m + 1] = #b
  local at = #b
  b:encode({ n = n, size = size, offs = offs })
  local p = b:ref()
  ffi.copy(p + 1, ("%16d"):format(at), 16)
  local msg = codec.message(b, {}, fname, level)
  b:free()
  return msg, m
end

-- Errors are raised as fname's, at `level` counted from the function
-- that raises them (1: itself), here and below.
local function check_table(t, fname, level)
  if type(t) ~= "table" then
    lib.argerror(fname, "argument #1 must be a table" .. (fname == "ffipar.share" and "" or
      " or a par.share snapshot") .. ", got " .. lib.show(t), level)
  end
end

-- The message of a snapshot of t: msg, keys, vals, n, and the number of
-- chunks (nil: one whole message).
local function encode(t, fname, level)
  local keys, vals, n = {}, {}, 0
  for k, v in pairs(t) do
    local tk = type(k)
    if tk ~= "string" and tk ~= "number" and tk ~= "boolean" then
      lib.argerror(fname, ("argument #1 has a %s as a key; a snapshot's keys are strings, "
        .. "numbers or booleans"):format(tk), level)
    end
    n = n + 1
    keys[n], vals[n] = k, v
  end
  local msg, nchunks
  if wire.plain(t) then
    msg, nchunks = chunked(keys, vals, n, fname, level)
  else
    msg = codec.encode(fname, "argument", 1, level, t, keys)
  end
  return msg, keys, vals, n, nchunks
end

local function owned(a)
  return ffi.gc(out[0], function(p)
    cache[a] = nil
    C.ffipar_obj_release(p)
  end)
end

-- A snapshot of t (level 3: the caller of the public function that called
-- this).
function M.snapshot(t, fname, level)
  check_table(t, fname, level + 1)
  local msg, keys, vals, n, nchunks = encode(t, fname, level + 1)
  local rc = C.ffipar_share_new(out, msg, n)
  if rc ~= 0 then error(fname .. ": " .. select(2, lib.fail(rc)), level) end
  local a = addr_of(out[0])
  sweep()
  cache[a] = { keys = keys, vals = vals, nchunks = nchunks }
  return owned(a)
end

--- The table of lazy snapshot h if it is not made yet (in the state that
-- shared it), else nil; then `opened`: a pool:best opened it to make it in
-- parts, and `live`: that call is walking t now (its parts stream not
-- ended: the workers still wait for parts).
function M.pending(h)
  local e = cache[addr_of(h)]
  if e and e.pending then
    return e.pending, e.opened, e.opened and C.ffipar_share_verdict(h) == 0
  end
end

--- Make lazy snapshot h whole now, if it is not made yet; errors in the
-- table are par.share's, raised at `level` (1: make's own line).
function M.make(h, level)
  local a = addr_of(h)
  local e = cache[a]
  if not (e and e.pending) then return end
  if select(3, M.pending(h)) then
    error("ffipar.share: a lazy snapshot cannot be used while the pool:best that makes it runs", level)
  end
  local msg, keys, vals, n, nchunks = encode(e.pending, "ffipar.share", level + 1)
  local rc = C.ffipar_share_make(h, msg, n)
  if rc ~= 0 then error("ffipar.share: " .. select(2, lib.fail(rc)), level) end
  cache[a] = { keys = keys, vals = vals, nchunks = nchunks }
end

--- Lazy snapshot h, just made in parts by pool:best: this state's entry
-- holds its own keys and values, as for any snapshot it shared.
function M.made(h, keys, vals, nchunks)
  cache[addr_of(h)] = { keys = keys, vals = vals, nchunks = nchunks }
end

M.addr_of = addr_of

-- Let go of a snapshot made for one call, now (not at the next GC).
function M.drop(h)
  cache[addr_of(h)] = nil
  C.ffipar_obj_release(ffi.gc(h, nil))
end

--- A snapshot of table t, shared by reference. Keys must be strings,
-- numbers or booleans; values anything that crosses into a worker.
function M.share(t, opts)
  if type(opts) ~= "nil" and type(opts) ~= "table" then     -- not opts ~= nil: a NULL cdata is nil
    lib.argerror("ffipar.share", "argument #2 (options) must be a table or nil, got " .. lib.show(opts))
  end
  local lazy = opts and opts.lazy
  if type(lazy) ~= "nil" and type(lazy) ~= "boolean" then
    lib.argerror("ffipar.share", "options.lazy must be a boolean or nil, got " .. lib.show(lazy))
  end
  if not lazy then
    local h = M.snapshot(t, "ffipar.share", 3)  -- not a tail call: level 3 is our caller
    return h
  end
  check_table(t, "ffipar.share", 3)
  local rc = C.ffipar_share_lazy(out)
  if rc ~= 0 then error("ffipar.share: " .. select(2, lib.fail(rc)), 2) end
  local a = addr_of(out[0])
  sweep()
  cache[a] = { pending = t }
  return owned(a)
end

--- True when v is a par.share snapshot.
function M.is_share(v)
  return istype(share_p, v) and v ~= nil
end

---- streams: a big table argument crossing while the receiver decodes it ----
--
-- par.spawn sends a table argument with more than a few thousand entries
-- and hundreds of sub-tables as a stream (a snapshot object without a
-- message): the spawned worker starts at once and decodes each chunk of
-- entries while the sender walks and encodes the next. The sender's walk
-- is the check wire.plain makes (marks stay on until the last chunk, so a
-- sub-table met again in a later chunk is still seen): when it finds
-- something that is not plain, the value goes as one converted message
-- instead (verdict WHOLE: the receiver drops the chunks it decoded) or, if
-- it cannot cross, the stream is abandoned and the sender raises the error.
-- The receiver builds the table only from the verdict DONE, so the function
-- never runs on a half-sent value.
local DONE, WHOLE, ABANDONED = C.FFIPAR_STREAM_DONE, C.FFIPAR_STREAM_WHOLE, C.FFIPAR_STREAM_ABANDONED
local STREAM = { s = true }
local STREAM_MIN = 4096                 -- entries
local sout = ffi.new("ffipar_share *[1]")

--- A stream for table x, or nil when x is small or not plain from the start.
function M.stream_for(x)
  if wire.probe(x) ~= nil then return nil end
  local n = 0
  for _ in next, x do n = n + 1 end
  if n < STREAM_MIN then return nil end
  local size = math.max(1024, math.ceil(n / MAX_CHUNKS))
  local rc = C.ffipar_share_stream(sout, math.ceil(n / size), n, math.min(#x, n))  -- #x: a border, maybe past holes
  if rc ~= 0 then return nil end
  -- A stream the sender could not end (an error on the way) ends when its
  -- handle goes: the receiver is never left waiting.
  return ffi.gc(sout[0], function(p)
    C.ffipar_share_end(p, ABANDONED, nil)             -- refused if it ended
    C.ffipar_obj_release(p)
  end), size
end

-- A new message of plain value v's encoding (b: a buffer to reuse).
local function message_of(b, v)
  b:reset()
  b:encode(v)
  local p, len = b:ref()
  local m = C.ffipar_msg_new(p, len, nil, 0)
  b:reset()
  if m == nil then error("out of memory", 0) end
  return m
end

local function put(h, b, c)
  if C.ffipar_share_put(h, message_of(b, c)) ~= 0 then error("ffipar: stream overflow", 0) end
end

-- The chunks of x, walked then encoded one by one; false at the first entry
-- that is not plain. The entries are listed first (wire.entries: a pairs
-- loop around entry_plain's walk could end early, and the receiver would
-- get part of x).
local function parts(h, x, size)
  local b = buffer.new()
  local seen, c, j, full = {}, {}, 0, 2 * size
  local entry_plain = wire.entry_plain
  local ks, vs, n = wire.entries(x)
  for i = 1, n do
    local k, v = ks[i], vs[i]
    if not entry_plain(k, v, seen, x) then b:free(); return false end
    c[j + 1], c[j + 2] = k, v
    j = j + 2
    if j == full then put(h, b, c); j = 0 end
  end
  if j > 0 then
    local last = {}
    for q = 1, j do last[q] = c[q] end
    put(h, b, last)
  end
  b:free()
  return true
end

--- Send x through stream h (from stream_for); the value is named `label
-- #index` in errors. Returns nil, or the error for the caller to raise.
function M.send(h, x, size, fname, label, index)
  local base = wire.mark_base()
  local ok, r = pcall(parts, h, x, size)
  wire.unmark(base)
  if ok and r then
    C.ffipar_share_end(h, DONE, nil)
    return nil
  end
  if not ok then
    C.ffipar_share_end(h, ABANDONED, nil)
    return fname .. ": " .. tostring(r)
  end
  local eok, m = pcall(codec.encode, fname, label, index, -2, x)   -- -2: no position
  if not eok then
    C.ffipar_share_end(h, ABANDONED, nil)
    return m
  end
  C.ffipar_share_end(h, WHOLE, m)
  return nil
end

--- End a stream that will not be sent.
function M.abandon(h)
  C.ffipar_share_end(h, ABANDONED, nil)
end

-- The receiver: the table, built as its chunks arrive.
local function receive(h)
  local n, len = tonumber(C.ffipar_share_len(h)), tonumber(C.ffipar_share_arraylen(h))
  local t = tnew(len, n - len)
  local i = 0
  while true do
    local rc = C.ffipar_share_wait(h, i, -1)
    if rc ~= 0 then error("ffipar: " .. select(2, lib.fail(rc)) .. " while receiving an argument", 0) end
    local v = C.ffipar_share_verdict(h)
    if v == WHOLE then return codec.decode(C.ffipar_share_whole(h))[1] end
    if v == ABANDONED then error("ffipar: the sending thread gave the value up", 0) end
    if i < C.ffipar_share_nparts(h) then
      local c = plain_decode(C.ffipar_share_part(h, i))
      for q = 1, #c, 2 do t[c[q]] = c[q + 1] end
      i = i + 1
    elseif v == DONE then
      return t
    end
  end
end

-- The collector stopped while the chunks are decoded (see wire.gc_pause),
-- when this state's heap is small enough to collect first.
function M.receive(h)
  local paused = collectgarbage("count") < 65536 and wire.gc_pause()
  local ok, r = pcall(receive, h)
  if paused then collectgarbage("restart") end
  if not ok then error(r, 0) end
  return r
end

---- parts: the one-call pool:best's chunks, published while it scores ----
--
-- The caller of pool:best(t, score) walks t once; it publishes some chunks
-- of entries as the parts of a stream (each { keys, vals }, string.buffer
-- encoded), which the pool's workers claim, decode and score, and scores
-- the others itself. The handle the workers get is the stream itself (not
-- a value to receive whole), registered by value.

--- Lazy snapshot h opened as the parts stream of the pool:best that makes
-- it (at most cap parts, n entries).
-- It is opened by the caller's own part of the call, which also ends the
-- stream: a stream opened and not ended is then a call in progress (a
-- score that crosses h meanwhile is refused), and once it ended the
-- workers read no parts after the call returns or raises.
function M.open_parts(h, cap, n)
  local rc = C.ffipar_share_open(h, cap, n)
  if rc ~= 0 then error("pool:best: " .. select(2, lib.fail(rc)), 0) end
  cache[addr_of(h)].opened = true
end

--- The message of part { keys, vals, g0 } (b: a buffer to reuse).
function M.encode_part(b, keys, vals, g0)
  return message_of(b, { keys, vals, g0 })
end

--- Seal lazy snapshot h, its parts stream ended: `more` (messages) are
-- appended as parts, `index` describes them all (see the top).
function M.seal(h, more, index)
  local k = #more
  local arr = ffi.new("ffipar_msg *[?]", math.max(k, 1))
  for i = 1, k do arr[i - 1] = more[i] end
  local b = buffer.new()
  local m = message_of(b, index)
  b:free()
  local rc = C.ffipar_share_seal(h, arr, k, m)
  if rc ~= 0 then error("pool:best: " .. select(2, lib.fail(rc)), 0) end
end

--- A stream of at most cap parts for the workers. The workers get its
-- address (pool:best keeps h alive until they are done): no reference of
-- their own to let go of.
function M.parts_stream(cap)
  local rc = C.ffipar_share_stream(sout, cap, 0, 0)
  if rc ~= 0 then error("pool:best: " .. select(2, lib.fail(rc)), 0) end
  local h = ffi.gc(sout[0], function(p)
    C.ffipar_share_end(p, ABANDONED, nil)             -- refused if it ended
    C.ffipar_obj_release(p)
  end)
  return h, addr_of(h)
end

--- The stream at address a (from parts_stream), in a worker.
function M.parts_at(a)
  return ffi.cast(share_p, a)
end

--- Publish { keys, vals, g0 } as the next part (b: a buffer to reuse; g0:
-- the number of its first entry).
function M.put_part(h, b, keys, vals, g0)
  put(h, b, { keys, vals, g0 })
end

--- End the parts: done (true) or abandoned.
function M.end_parts(h, done)
  C.ffipar_share_end(h, done and DONE or ABANDONED, nil)
end

--- Part i (from 0) decoded here: keys, vals, g0; nil once the stream
-- ended without it. Waits for it.
function M.part(h, i)
  local rc = C.ffipar_share_wait(h, i, -1)
  if rc ~= 0 then error("ffipar: " .. select(2, lib.fail(rc)), 0) end
  local m = C.ffipar_share_part(h, i)
  if m == nil then return nil end
  local c = plain_decode(m)
  return c[1], c[2], c[3]
end

M._methods = { share = share }

function M.to_wire(h)
  if M.pending(h) then
    local ok, err = pcall(M.make, h, 1)
    if not ok then
      error("a lazy par.share snapshot could not be made: " .. tostring(err):gsub("^[^:]*:%d+: ", ""), 0)
    end
  end
  if C.ffipar_share_msg(h) == nil and C.ffipar_share_index(h) == nil then return h, STREAM end
  return h
end
function M.from_wire(obj, params)
  local h = lib.adopt(obj, "struct ffipar_share *")
  if params and params.s then return M.receive(h) end
  return h
end

return M
