-- ffipar.channel: bounded channels, many producers and many consumers, and
-- par.select over several of them.
--
--   local ch = par.channel(64)                 -- untyped: what crosses into workers
--   par.spawn(function(ch) for i = 1, 10 do ch:push(i) end ch:close() end, ch)
--   for v in ch:iter() do print(v) end         -- until closed and drained
--
-- Untyped items: numbers, booleans and strings up to 40 bytes (VSTR_MAX)
-- sit inline in the slot (no serialization), as does a plain table whose
-- string.buffer encoding is that short. Longer strings and encodings are
-- bytes: up to 4 KiB (BUF_MAX) they are copied into the slot's own buffer,
-- which the pop trades for the popper's spare (no malloc or free in steady
-- traffic), longer ones into a C message (the malloc is then small beside
-- the copy). A table is plain when string.buffer encodes it and C finds no
-- sub-table in the encoding (no Lua walk), or else when wire.plain accepts
-- it. Anything else that may cross (int64 cdata, ffipar handles, functions,
-- shared sub-tables) goes as a codec message. nil is refused. Typed channels (par.channel(cap, "rec_t")) copy the ctype's bytes.
-- Misuse raises at the caller; push/pop return nil, "timeout" | "closed" |
-- "cancelled" as expected outcomes.
local ffi = require "ffi"
local lib = require "ffipar.lib"
local codec = require "ffipar.codec"
local shm = require "ffipar.shm"
local C = lib.C
lib.declare("channel")

local M = {}

local VNUM, VBOOL, VSTR, VMSG = C.FFIPAR_VNUM, C.FFIPAR_VBOOL, C.FFIPAR_VSTR, C.FFIPAR_VMSG
local VLSTR, VENC, VSENC = C.FFIPAR_VLSTR, C.FFIPAR_VENC, C.FFIPAR_VSENC
local VNUMS, VNUMS_MAX = C.FFIPAR_VNUMS, C.FFIPAR_VNUMS_MAX
assert(VNUMS_MAX == 5, "nums reads five values")
local VBSTR, VBENC, VSPARE, BUF_MAX = C.FFIPAR_VBSTR, C.FFIPAR_VBENC, C.FFIPAR_VSPARE,
  C.FFIPAR_BUF_MAX
local wire = require "ffipar.wire"
local plain, BIG, gc_pause = wire.plain, wire.BIG, wire.gc_pause
local ebuf, dbuf = require("string.buffer").new(), require("string.buffer").new()
local VSTR_MAX = C.FFIPAR_VSTR_MAX
local ECLOSED = C.FFIPAR_ECLOSED

local fail = lib.fail
local lenp = lib.lenp
local ffi_copy, ffi_string, ffi_istype, ffi_cast = ffi.copy, ffi.string, ffi.istype, ffi.cast
local type = type

-- Per-state scratch: one value to push from, one to pop into (a state runs
-- one thing at a time, and C copies before returning).
local pushv = ffi.new("ffipar_value")
local popv = ffi.new("ffipar_value")
local popv_s = ffi.cast("const char *", popv.u.s)   -- its inline bytes (popv keeps them)
local pushv_d = ffi.cast("double *", pushv.u.d)
local cdouble_p = ffi.typeof("const double *")
local chp = ffi.new("ffipar_channel *[1]")

-- Per-state spare buffers (see ffipar_channel_buf): the pusher's, a reserve
-- of BUF_MAX bytes that a slot takes only when there is no memory for a
-- buffer of its own, and the popper's, traded for the buffer of each bytes
-- item popped. Freed with the state.
local function free_spare(p)
  C.ffipar_channel_buf_free(p[0])
  p[0] = nil
end
local pspare = ffi.gc(ffi.new("ffipar_channel_buf *[1]"), free_spare)
local cspare = ffi.gc(ffi.new("ffipar_channel_buf *[1]"), free_spare)

-- A new reserve for the pusher (the last one went into a slot).
local function new_reserve(fname)
  C.ffipar_channel_buf_free(pspare[0])
  pspare[0] = nil
  local b = C.ffipar_channel_buf_new(BUF_MAX)
  if b == nil then error(fname .. ": out of memory", 4) end
  pspare[0] = b
  return b
end

local kinds = {}        -- handle ctype id -> kind of a typed channel (nil: untyped)
local fdp = ffi.new("int[1]")

-- A value for a message: a cdata by its type's name (see shm.ctype_name).
local function describe(v)
  if type(v) ~= "cdata" then return type(v) end
  if shm.array_span(v) then return (tostring(v):match("^[^:]*")) end
  local what = shm.ctype_name(ffi.typeof(v))
  return v == nil and ("a NULL " .. what) or what
end

local function kind_of(h)
  return kinds[tonumber(ffi.typeof(h))]
end

local function handle_tostring(h)
  local k = kind_of(h)
  return ("ffipar.channel%s: %d/%d%s"):format(k and ("<" .. k.name .. ">") or "",
    tonumber(C.ffipar_channel_len(h.c)), tonumber(C.ffipar_channel_cap(h.c)),
    C.ffipar_channel_closed(h.c) ~= 0 and " closed" or "")
end

local untyped_ct         -- the handle ctype of untyped channels

local function is_channel(h)
  return type(h) == "cdata" and (ffi_istype(untyped_ct, h) or kind_of(h) ~= nil)
end

local function bad_self(fname, v)
  lib.bad_self(fname, "channel", "ch", v)
end

-- Check self in a method every channel has (not on a hot path).
local function check(h, fname)
  if type(h) ~= "cdata" or not (ffi_istype(untyped_ct, h) or kind_of(h)) then
    lib.bad_self(fname, "channel", "ch", h)
  end
end

-- Methods every channel has.
local function common(m)
  --- Close: pushes fail with "closed", pops drain then fail. Idempotent.
  function m.close(h) check(h, "ch:close"); C.ffipar_channel_close(h.c) end
  --- True once closed (items may still be queued).
  function m.closed(h) check(h, "ch:closed"); return C.ffipar_channel_closed(h.c) ~= 0 end
  --- The capacity.
  function m.cap(h) check(h, "ch:cap"); return tonumber(C.ffipar_channel_cap(h.c)) end
  local function nxt(h)
    local v, err = m.pop(h)
    if v == nil and err ~= "closed" then
      error("ffipar.channel: iteration stopped: " .. tostring(err), 2)
    end
    return v
  end
  --- for v in ch:iter() do ... end: pops until closed and drained.
  function m.iter(h) check(h, "ch:iter"); return nxt, h end
  --- A descriptor for event loops: readable while pop(0) would return a
  -- value or "closed"; made on first call, closed with the channel.
  function m.fd(h)
    check(h, "ch:fd")
    local rc = C.ffipar_channel_fd(h.c, fdp)
    if rc == ECLOSED then lib.argerror("ch:fd", "the descriptor was closed (ch:close_fd())") end
    if rc ~= 0 then lib.fd_error("ch:fd") end
    return fdp[0]
  end
  --- Close the descriptor now instead of with the channel (stop polling
  -- it first). Idempotent.
  function m.close_fd(h)
    check(h, "ch:close_fd")
    C.ffipar_channel_fd_close(h.c)
  end
  return m
end

---- untyped channels ----

local untyped = {}

-- The types string.buffer writes as they are.
local SCALAR = { number = true, string = true, boolean = true, ["nil"] = true }

-- The type of the first key or value of table t that is not a scalar, or
-- nil. A table with a sub-table is walked before string.buffer sees it:
-- string.buffer encodes a shared sub-table once per path, so a DAG would
-- cost its number of paths (2^31 for 31 levels of { a = t, b = t }: 11 s
-- and a 2 GB buffer, then refused). The array part first, in a numeric loop
-- (under 1 ns an entry, compiled), then t[0] (a traversal from #t does not
-- reach it), and pairs only when a look after #t finds more (about 8 ns a
-- field). That look misses a key that LuaJIT keeps in the hash part before
-- #t (in { [1] = 5, x = 1 }, or { 1, 2, x = 1 } with 3 added later): a
-- proof that there is none costs 4-5 ns a key (only_array), so C checks
-- the encoding instead (see encoded).
local function nonscalar(t)
  local n = #t
  for i = 1, n do
    local tx = type(rawget(t, i))
    if not SCALAR[tx] then return tx end
  end
  local t0 = type(rawget(t, 0))
  if not SCALAR[t0] then return t0 end
  if next(t, n > 0 and n or nil) == nil then return nil end
  for k, x in pairs(t) do
    local tk, tx = type(k), type(x)
    if not SCALAR[tk] then return tk end
    if not SCALAR[tx] then return tx end
  end
  return nil
end

-- Encode table t into ebuf if it can cross as string.buffer encodes it:
-- scalars only (C checks the encoding: a key nonscalar did not see may hold
-- a sub-table), or a tree of them (wire.plain). False for anything else:
-- the codec converts it, or names what cannot cross.
-- (Callers name themselves with a constant after this returns: once, in a
-- full `make test`, the failed pcall's message "cannot serialize 'thread'"
-- came back in place of a caller's argument holding "ch:push", under the
-- JIT; not reproduced since.)
local function encoded(t)
  ebuf:reset()
  local other = nonscalar(t)
  if other and (other ~= "table" or not plain(t)) then return false end
  if not pcall(ebuf.encode, ebuf, t) then return false end
  if other then return true end                 -- a tree, walked by plain
  local p, len = ebuf:ref()
  return C.ffipar_channel_flat(p, len) ~= 0 or plain(t)
end

-- True when table t, of length n, has no key but 1..n: the traversal lists
-- every key once, so 1 first, then each i followed by i + 1, and n last
-- prove it. (#t and a look after n would miss a key that LuaJIT keeps in
-- the hash part before n.) The loop runs to its end: one that returned
-- early made the JIT's traces of every push worse.
local function only_array(t, n)
  if next(t) ~= 1 then return false end
  local ok = true
  for i = 1, n - 1 do
    if next(t, i) ~= i + 1 then ok = false end
  end
  return ok and next(t, n) == nil
end

-- pushv as an item of n bytes at data, to be copied into the slot's buffer
-- (the push hands over this state's spare, or a new reserve, in exchange).
local function buffered(tag, n, data, fname)
  local b = pspare[0]
  if b == nil or b.cap < BUF_MAX then b = new_reserve(fname) end
  pushv.tag = tag
  pushv.len = n
  pushv.u.b.data = data
  pushv.u.b.buf = b
end

-- A table of 1 to VNUMS_MAX numbers at keys 1..n and no other key goes
-- as those numbers (VNUMS): no encoding, and the pop makes the table with
-- a constructor: a point, a colour, a pair (push + pop of three numbers in
-- one thread: 30 ns, against 66-75 encoded).
-- (No loop over the values: a loop over values of several types, as in
-- { 1, "two", 3 }, became a trace of its own and slowed every push of it.)
local function nums(t)
  local n = #t
  if n == 0 or n > VNUMS_MAX then return false end
  local x1, x2, x3, x4, x5 = rawget(t, 1), rawget(t, 2), rawget(t, 3), rawget(t, 4), rawget(t, 5)
  if type(x1) ~= "number" or n > 1 and type(x2) ~= "number" or n > 2 and type(x3) ~= "number"
      or n > 3 and type(x4) ~= "number" or n > 4 and type(x5) ~= "number"
      or not only_array(t, n) then
    return false
  end
  pushv_d[0], pushv_d[1], pushv_d[2] = x1, x2 or 0, x3 or 0
  pushv_d[3], pushv_d[4] = x4 or 0, x5 or 0
  pushv.tag = VNUMS
  pushv.len = n
  return true
end

-- Fill pushv from v; returns the message when one was made (freed by the
-- caller if the push fails).
local function fill(v, fname)
  local tv = type(v)
  if tv == "number" then
    pushv.tag = VNUM
    pushv.u.n = v
  elseif tv == "boolean" then
    pushv.tag = VBOOL
    pushv.len = v and 1 or 0
  elseif tv == "string" and #v <= VSTR_MAX then
    pushv.tag = VSTR
    pushv.len = #v
    ffi_copy(pushv.u.s, v, #v)
  elseif tv == "string" and #v <= BUF_MAX then
    buffered(VBSTR, #v, v, fname)
  elseif tv == "string" then
    local msg = C.ffipar_msg_new(v, #v, nil, 0)
    if msg == nil then error(fname .. ": out of memory", 3) end
    pushv.tag = VLSTR
    pushv.u.msg = msg
    return msg
  elseif tv == "table" and nums(v) then
    return
  elseif tv == "table" and encoded(v) then
    local p, len = ebuf:ref()
    if len <= VSTR_MAX then      -- inline, as a short string
      pushv.tag = VSENC
      pushv.len = len
      ffi_copy(pushv.u.s, p, len)
      return
    elseif len <= BUF_MAX then       -- ebuf is reset after the push has copied it
      buffered(VBENC, len, p, fname)
      return
    end
    local msg = C.ffipar_msg_new(p, len, nil, 0)
    ebuf:reset()
    if msg == nil then error(fname .. ": out of memory", 3) end
    pushv.tag = VENC
    pushv.u.msg = msg
    return msg
  elseif v == nil then
    lib.argerror(fname, "cannot push nil (it would end a for-loop over the channel; "
      .. "push false or a table instead)", 3)
  else
    local msg = codec.encode("ch:push", "value", 1, 3, v)
    pushv.tag = VMSG
    pushv.u.msg = msg
    return msg
  end
end

--- Push v, waiting for room up to timeout seconds (nil: forever).
-- true | nil, "timeout" | "closed" | "cancelled".
function untyped.push(h, v, timeout)
  if not ffi_istype(untyped_ct, h) then bad_self("ch:push", h) end
  local t = lib.timeout(timeout, "ch:push")
  local msg = fill(v, "ch:push")
  local rc = C.ffipar_channel_push(h.c, pushv, t)
  local tag = pushv.tag
  if tag == VBENC then ebuf:reset() end
  if rc ~= 0 then
    if msg then C.ffipar_msg_free(msg) end
    return fail(rc)
  end
  if tag == VBSTR or tag == VBENC then pspare[0] = pushv.u.b.buf end   -- what the slot gave back
  return true
end

-- The bytes of a VBSTR/VBENC item popped into v: v's buffer is ours now,
-- and our spare went to the slot. A pop that runs meanwhile (a finalizer
-- during decode) finds no spare and offers none; whichever buffer comes
-- back second is freed.
local function unpack_bytes(v, tag)
  cspare[0] = nil
  local b = v.u.b.buf
  local ok, r
  if tag == VBSTR then
    ok, r = true, ffi_string(b.data, v.len)
  else
    -- Copied first: the bytes were written on the producer's core, and
    -- memcpy's loads miss in parallel where decode's would miss one by one.
    dbuf:reset()
    dbuf:putcdata(b.data, v.len)
    ok, r = pcall(dbuf.decode, dbuf)
    dbuf:reset()
  end
  if cspare[0] == nil then cspare[0] = b else C.ffipar_channel_buf_free(b) end
  if not ok then error("ffipar.channel: cannot decode a value: " .. tostring(r), 3) end
  return r
end

-- The value popped into v; s is v.u.s as a pointer (made once for popv:
-- indexing v.u.s makes a new cdata each time).
local function unpack_value(v, s)
  local tag = v.tag
  if tag == VNUM then return v.u.n end
  if tag == VSTR then return ffi_string(s, v.len) end
  if tag == VBOOL then return v.len ~= 0 end
  if tag == VBSTR or tag == VBENC then return unpack_bytes(v, tag) end
  if tag == VNUMS then
    local n, d = v.len, ffi_cast(cdouble_p, s)
    if n == 3 then return { d[0], d[1], d[2] } end
    if n == 2 then return { d[0], d[1] } end
    if n == 4 then return { d[0], d[1], d[2], d[3] } end
    if n == 1 then return { d[0] } end
    return { d[0], d[1], d[2], d[3], d[4] }
  end
  if tag == VSENC then
    dbuf:set(s, v.len)             -- decoded in place, from v
    local ok, r = pcall(dbuf.decode, dbuf)
    dbuf:reset()
    if not ok then error("ffipar.channel: cannot decode a value: " .. tostring(r), 3) end
    return r
  end
  local msg = v.u.msg
  if tag == VLSTR then
    local s = ffi_string(C.ffipar_msg_data(msg, lenp), lenp[0])
    C.ffipar_msg_free(msg)
    return s
  elseif tag == VENC then
    dbuf:set(C.ffipar_msg_data(msg, lenp), lenp[0])
    local big = lenp[0] >= BIG and gc_pause()        -- see wire.decode
    local ok, r = pcall(dbuf.decode, dbuf)
    if big then collectgarbage("restart") end
    dbuf:reset()
    C.ffipar_msg_free(msg)
    if not ok then error("ffipar.channel: cannot decode a value: " .. tostring(r), 3) end
    return r
  end
  local ok, r = pcall(codec.decode, msg)
  C.ffipar_msg_free(msg)
  if not ok then error("ffipar.channel: cannot decode a value: " .. tostring(r), 3) end
  return r[1]
end

--- Pop a value, waiting up to timeout seconds (nil: forever).
-- v | nil, "timeout" | "closed" (closed and drained) | "cancelled".
function untyped.pop(h, timeout)
  if not ffi_istype(untyped_ct, h) then bad_self("ch:pop", h) end
  local t = lib.timeout(timeout, "ch:pop")
  popv.tag = VSPARE               -- offer our spare (see ffipar_value)
  popv.u.b.buf = cspare[0]
  local rc = C.ffipar_channel_pop(h.c, popv, t)
  if rc ~= 0 then return fail(rc) end
  return unpack_value(popv, popv_s)
end

-- A handle ctype (a struct holding the channel) with methods m.
local function handle_ctype(m)
  common(m)
  local ct = ffi.typeof("struct { ffipar_channel *c; }")
  ffi.metatype(ct, {
    __index = m,
    __len = function(h) return tonumber(C.ffipar_channel_len(h.c)) end,
    __gc = function(h) C.ffipar_obj_release(h.c) end,
    __tostring = function(h) return handle_tostring(h) end,
  })
  codec.register_ctype(ct, "channel")
  return ct
end

untyped_ct = handle_ctype(untyped)

---- typed channels ----

local typed = {}       -- element name -> { ct = handle ctype, elem = ctype, ... }

local function scalar(elem)
  local ok, info = pcall(function()
    local t = ffi.typeof("$ [1]", elem)
    local a = t()
    local v = a[0]
    if type(v) ~= "cdata" or ffi.istype("int64_t", v) or ffi.istype("uint64_t", v) then
      return type(v) == "boolean" and "boolean" or "number"
    end
    return false
  end)
  return ok and info
end

-- The handle ctype of a typed channel of `name` (built once per state).
local function typed_kind(name, elem)
  local k = typed[name]
  if k then return k end
  local size, align = ffi.sizeof(elem), ffi.alignof(elem)
  local is_scalar = scalar(elem)
  local arr_t = ffi.typeof("$ [?]", elem)
  local one_t = ffi.typeof("$ [1]", elem)
  local ptr_t = ffi.typeof("$ *", elem)
  local cin, cout = one_t(), one_t()
  local m = {}
  local pname = "ch:push"
  local ct                -- this kind's handle ctype (made below)

  -- Push one item: a cdata of the ctype (copied), or anything that
  -- initializes one (a number for scalars, a table for structs).
  local function assign(v) cin[0] = v end
  -- Convert an item that is not a cdata of the ctype into cin (kept out
  -- of push: no closure, no pcall on the compiled path).
  local function convert(v)
    if type(v) == "nil" then lib.argerror(pname, "cannot push nil", 3) end
    if ffi_istype(ptr_t, v) or ffi_istype(elem, v) then
      if v == nil then lib.argerror(pname, ("expected %s, got a NULL pointer"):format(name), 3) end
      cin[0] = v[0]
      return
    end
    local tv = type(v)
    if is_scalar then
      -- numbers (and int64 cdata) for number types, booleans for bool
      if tv ~= is_scalar and not (is_scalar == "number" and tv == "cdata" and
          (ffi_istype("int64_t", v) or ffi_istype("uint64_t", v))) then
        lib.argerror(pname, ("expected %s, got %s"):format(name, describe(v)), 3)
      end
    elseif tv ~= "table" then
      -- a struct: a cdata of another type is refused by name, not by ffi's
      -- conversion message (which names anonymous structs by number)
      lib.argerror(pname, ("expected %s (a %s cdata, a pointer to one or a table that "
        .. "initializes one), got %s"):format(name, name, describe(v)), 3)
    end
    local ok, err = pcall(assign, v)
    if not ok then
      lib.argerror(pname, ("expected %s, got %s that does not initialize one (%s)")
        :format(name, describe(v), shm.readable(err)), 3)
    end
  end

  -- Push one item: a cdata of the ctype (copied), or anything that
  -- initializes one (a number for scalars, a table for structs).
  function m.push(h, v, timeout)
    if not ffi_istype(ct, h) then bad_self("ch:push", h) end
    local t = lib.timeout(timeout, pname)
    local rc
    if ffi_istype(elem, v) and v ~= nil then    -- a struct, or a pointer to one (not NULL)
      rc = C.ffipar_channel_push(h.c, v, t)
    else
      if type(v) == is_scalar then cin[0] = v else convert(v) end
      rc = C.ffipar_channel_push(h.c, cin, t)
    end
    if rc ~= 0 then return fail(rc) end
    return true
  end

  -- Pop one item: a fresh cdata of the ctype (a number for number
  -- scalars), or, given `into` (a cdata of the ctype), filled in place.
  function m.pop(h, timeout, into)
    if not ffi_istype(ct, h) then bad_self("ch:pop", h) end
    local t = lib.timeout(timeout, "ch:pop")
    if type(into) ~= "nil" then
      if not ffi_istype(elem, into) or into == nil then
        lib.argerror("ch:pop", ("argument #2 (into) must be a %s cdata, got %s"):format(name,
          describe(into)), 2)
      end
      local rc = C.ffipar_channel_pop(h.c, into, t)
      if rc ~= 0 then return fail(rc) end
      return into
    end
    if is_scalar then
      local rc = C.ffipar_channel_pop(h.c, cout, t)
      if rc ~= 0 then return fail(rc) end
      return cout[0]
    end
    local r = elem()
    local rc = C.ffipar_channel_pop(h.c, r, t)
    if rc ~= 0 then return fail(rc) end
    return r
  end

  -- Element counts of fixed-size cdata arrays of the ctype (double[8]), by
  -- ctype id; false for any other ctype.
  local fixed = {}
  local function fixed_len(a)
    local id = tonumber(ffi.typeof(a))
    local len = fixed[id]
    if len == nil then
      len = false
      local bytes = ffi.sizeof(a)
      if bytes and bytes % size == 0 then
        local ok, t = pcall(ffi.typeof, "$ [$]", elem, bytes / size)
        if ok and tonumber(t) == id then len = bytes / size end
      end
      fixed[id] = len
    end
    return len
  end
  -- The element pointer and length (nil: unknown) of an array argument:
  -- a cdata array of the ctype (double[?], double[8]), a pointer to it
  -- (trusted for its length) or a par.array of it. Anything else, a NULL
  -- pointer and arrays of another type are refused.
  local function base_slow(a, fname)
    if type(a) == "cdata" then
      local p, len = shm.array_span(a)
      if p then
        if ffi_istype(ptr_t, p) then return p, len end
      elseif a ~= nil then
        len = fixed_len(a)
        if len then return a, len end
      end
    end
    lib.argerror(fname, ("expected an array of %s (a cdata array, a pointer or a "
      .. "par.array of %s), got %s"):format(name, name, describe(a)), 4)
  end
  local function span(a, n, lo, fname)
    local p, len
    if ffi_istype(arr_t, a) then p, len = a, ffi.sizeof(a) / size
    elseif ffi_istype(ptr_t, a) and a ~= nil then p = a
    else p, len = base_slow(a, fname) end
    if type(n) ~= "number" or n < 1 or n % 1 ~= 0 or n > 2^31 - 1 then
      lib.argerror(fname, "count must be an integer >= 1, got " .. tostring(n), 3)
    end
    if type(lo) == "nil" then lo = 0
    elseif type(lo) ~= "number" or lo < 0 or lo % 1 ~= 0 then
      lib.argerror(fname, "lo must be an integer >= 0 or nil, got " .. lib.show(lo), 3)
    end
    if len and lo + n > len then
      lib.argerror(fname, ("items [%d, %d) are outside the array of %d"):format(lo, lo + n, len), 3)
    end
    return ffi.cast(ptr_t, p) + lo
  end

  --- Push n items a[lo .. lo+n-1] of an array of the ctype (a cdata array,
  -- pointer or par.array); waits only for the first; returns how many went in.
  function m.push_many(h, a, n, timeout, lo)
    if not ffi_istype(ct, h) then bad_self("ch:push_many", h) end
    local t = lib.timeout(timeout, "ch:push_many")
    local rc = C.ffipar_channel_push_many(h.c, span(a, n, lo, "ch:push_many"), n, t)
    if rc < 0 then return fail(rc) end
    return rc
  end

  --- Pop up to n items into a[lo ...]; waits only for the first; returns how many.
  function m.pop_many(h, a, n, timeout, lo)
    if not ffi_istype(ct, h) then bad_self("ch:pop_many", h) end
    local t = lib.timeout(timeout, "ch:pop_many")
    local rc = C.ffipar_channel_pop_many(h.c, span(a, n, lo, "ch:pop_many"), n, t)
    if rc < 0 then return fail(rc) end
    return rc
  end

  ct = handle_ctype(m)
  k = { ct = ct, elem = elem, name = name, size = size, align = align,
        scalar = is_scalar, methods = m, arr = arr_t }
  typed[name] = k
  kinds[tonumber(ct)] = k
  return k
end

-- Resolve a ctype argument to (ctype, a name every state can resolve).
local function resolve(ctype)
  codec.sync_cdefs()        -- a par.cdef made since this worker started
  local name = ctype
  if type(ctype) == "cdata" then
    name = tostring(ctype):match("^ctype<(.*)>$") and shm.ctype_name(ctype)
    if name and (name:match("^struct %d+$") or name:match("^union %d+$")) then name = nil end
  end
  if type(name) ~= "string" then
    lib.argerror("ffipar.channel", "ctype must be a type name (string) or a named ctype, got "
      .. tostring(ctype), 3)
  end
  local ok, ct = pcall(ffi.typeof, name)
  if not ok then
    lib.argerror("ffipar.channel", ("unknown ctype '%s' (declare it with par.cdef): %s"):format(name, ct), 3)
  end
  local okz, size = pcall(ffi.sizeof, ct)
  if not okz or not size or size == 0 then
    lib.argerror("ffipar.channel", ("ctype '%s' has no fixed size"):format(name), 3)
  end
  local s = tostring(ct)
  if s:match("%*>$") or s:match("%(") then
    lib.argerror("ffipar.channel", ("ctype '%s' is a pointer or function; a channel copies "
      .. "plain data only"):format(name), 3)
  end
  return ct, name
end

local function wrap(ptr, kind)
  if kind then return kind.ct(ptr) end
  return untyped_ct(ptr)
end

--- A new channel of capacity cap (1 .. 2^24; the ring fits in 1 GiB). Without ctype it carries Lua
-- values; with ctype (a fixed-size type name or named ctype) it copies items.
function M.channel(cap, ctype)
  lib.count(cap, "ffipar.channel", "capacity", 1, 2^24, 2)
  local kind
  if type(ctype) ~= "nil" then
    local elem, name = resolve(ctype)
    kind = typed_kind(name, elem)
    if kind.size > 2^20 then
      lib.argerror("ffipar.channel", ("'%s' items are %d bytes; a channel's items are limited to "
        .. "1 MiB (send a par.array or par.new handle through an untyped channel instead)")
        :format(name, kind.size))
    end
    if kind.align > 64 then
      lib.argerror("ffipar.channel", ("'%s' is aligned to %d bytes; a channel's items may be "
        .. "aligned to at most 64"):format(name, kind.align))
    end
  end
  local rc = C.ffipar_channel_new(chp, cap, kind and kind.size or 0, kind and kind.align or 8,
    kind and 0 or 1)
  if rc == C.FFIPAR_EINVAL then
    lib.argerror("ffipar.channel", ("capacity %d of %s is too large (a channel's ring is "
      .. "limited to 1 GiB)"):format(cap, kind and ("%d-byte '%s' items"):format(kind.size, kind.name)
      or "values"))
  end
  if rc ~= 0 then error("ffipar.channel: " .. select(2, lib.fail(rc)), 2) end
  return wrap(chp[0], kind)
end

M._methods = { channel = untyped }
M._typed = typed         -- element name -> kind; kind.methods: a typed channel's methods

---- crossing into other states ----

function M.to_wire(h)
  local kind = kind_of(h)
  return h.c, kind and { ct = kind.name } or {}
end

function M.from_wire(obj, params)
  local kind
  local c = ffi.cast("ffipar_channel *", obj)
  if params.ct then
    local elem = ffi.typeof(params.ct)
    kind = typed_kind(params.ct, elem)
    if ffi.sizeof(elem) ~= tonumber(C.ffipar_channel_size(c)) then
      error(("ffipar.channel: ctype '%s' has a different size in this state"):format(params.ct))
    end
  end
  C.ffipar_obj_retain(c)
  return wrap(c, kind)
end

---- select ----

local sel_buf_size = 0
local sel_buf
local sel_chs_n = 0
local sel_chs
local whichp = ffi.new("int[1]")

--- Wait until one of the channels has a value (or is closed and drained):
-- i, v | i, nil, "closed" | nil, "timeout" | nil, "cancelled". Values win
-- over closed channels; no channel starves.
function M.select(chs, timeout)
  if type(chs) ~= "table" or #chs == 0 then
    lib.argerror("ffipar.select", "argument #1 must be a non-empty list of channels, got "
      .. (type(chs) == "table" and "an empty table" or type(chs)))
  end
  local t = lib.timeout(timeout, "ffipar.select")
  local n = #chs
  if n > sel_chs_n then
    sel_chs = ffi.new("ffipar_channel *[?]", n)
    sel_chs_n = n
  end
  local need = ffi.sizeof("ffipar_value")
  for i = 1, n do
    local h = chs[i]
    if type(h) ~= "cdata" or not (ffi.istype(untyped_ct, h) or kind_of(h)) then
      lib.argerror("ffipar.select", ("item %d is not a channel (%s)"):format(i, tostring(h)))
    end
    sel_chs[i - 1] = h.c
    local k = kind_of(h)
    if k and k.size > need then need = k.size end
  end
  if need > sel_buf_size then
    sel_buf = ffi.new("double[?]", math.ceil(need / 8))
    sel_buf_size = need
  end
  local sv = ffi.cast("ffipar_value *", sel_buf)
  sv.tag = VSPARE                 -- offered to an untyped channel (see ffipar_value)
  sv.u.b.buf = cspare[0]
  local rc = C.ffipar_channel_select(sel_chs, n, sel_buf, whichp, t)
  if rc == ECLOSED then return whichp[0] + 1, nil, "closed" end
  if rc ~= 0 then return fail(rc) end
  local i = whichp[0] + 1
  local k = kind_of(chs[i])
  if not k then return i, unpack_value(sv, ffi.cast("const char *", sv.u.s)) end
  if k.scalar then return i, ffi.cast(ffi.typeof("$ *", k.elem), sel_buf)[0] end
  local r = k.elem()
  ffi_copy(r, sel_buf, k.size)
  return i, r
end

M.is_channel = is_channel     -- for ffipar.uv

-- Spare buffers this state holds now (0 to 2), for tests that count them.
function M._spares()
  return (pspare[0] ~= nil and 1 or 0) + (cspare[0] ~= nil and 1 or 0)
end

return M
