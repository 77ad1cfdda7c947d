-- Channels: 1e6 items from a producer worker to the main thread, against
-- two C baselines in the same run: a mutex + condition variable bounded
-- queue (chan_mutex) and a lock-free single-producer ring (chan_spsc).
local ffi = require "ffi"
local par = require "ffipar"

par.cdef "typedef struct { int64_t id; double x, y; } bench_rec_t;"   -- 24 bytes

local N = tonumber(os.getenv("BENCH_CHANNEL_N")) or 1000000
local CAP = 1024

-- Untyped numbers: ns per item, producer worker -> consumer (main).
local function numbers()
  local ch = par.channel(CAP)
  local t = par.spawn(function(ch, n)
    for i = 1, n do ch:push(i) end
    ch:close()
  end, ch, N)
  local t0 = par.now()
  local sum = 0
  while true do
    local v = ch:pop()
    if v == nil then break end
    sum = sum + v
  end
  local dt = par.now() - t0
  assert(t:join())
  assert(sum == N * (N + 1) / 2, "lost items")
  return dt / N * 1e9
end

-- Typed records, one push/pop call per record.
local function records()
  local ch = par.channel(CAP, "bench_rec_t")
  local t = par.spawn(function(ch, n)
    local ffi = require "ffi"
    local r = ffi.new("bench_rec_t")
    for i = 1, n do r.id = i; r.x = i; ch:push(r) end
    ch:close()
  end, ch, N)
  local r = ffi.new("bench_rec_t")
  local t0 = par.now()
  local sum = 0
  while ch:pop(nil, r) do sum = sum + r.x end
  local dt = par.now() - t0
  assert(t:join())
  assert(sum == N * (N + 1) / 2, "lost records")
  return dt / N * 1e9
end

-- Typed records moved in batches (push_many/pop_many of up to 256).
local function records_batched()
  local ch = par.channel(CAP, "bench_rec_t")
  local t = par.spawn(function(ch, n)
    local ffi = require "ffi"
    local B = 256
    local buf = ffi.new("bench_rec_t[?]", B)
    local i = 1
    while i <= n do
      local k = math.min(B, n - i + 1)
      for j = 0, k - 1 do buf[j].id = i + j; buf[j].x = i + j end
      local sent = 0
      while sent < k do sent = sent + ch:push_many(buf, k - sent, nil, sent) end
      i = i + k
    end
    ch:close()
  end, ch, N)
  local buf = ffi.new("bench_rec_t[?]", 256)
  local t0 = par.now()
  local sum = 0
  while true do
    local k = ch:pop_many(buf, 256)
    if not k then break end
    for j = 0, k - 1 do sum = sum + buf[j].x end
  end
  local dt = par.now() - t0
  assert(t:join())
  assert(sum == N * (N + 1) / 2, "lost records")
  return dt / N * 1e9
end

return {
  {
    -- The machine's own cross-core cost (see bench/c/pingpong.c): read the
    -- channel and loop rows beside it.
    name = "host: cache-line round trip, CPU 0 <-> 1 (C only)",
    unit = "ns",
    c = "bench/c/pingpong 200000",
  },
  {
    name = "channel: 1e6 numbers, 2 threads",
    unit = "ns/item",
    target = "<= 2x C mutex queue",
    limit = { ratio = 2 },
    lua = numbers,
    c = ("bench/c/chan_mutex %d %d 8"):format(N, CAP),
  },
  {
    name = "  same, C lock-free SPSC ring",
    unit = "ns/item",
    lua = numbers,
    c = ("bench/c/chan_spsc %d %d 8"):format(N, CAP),
  },
  {
    name = "channel: 1e6 typed 24-byte records",
    unit = "ns/item",
    target = "<= 60 ns",
    limit = { abs = 60 },
    lua = records,
    c = ("bench/c/chan_mutex %d %d 24"):format(N, CAP),
  },
  {
    name = "channel: 1e6 typed records, batches of 256",
    unit = "ns/item",
    target = "<= 60 ns",
    limit = { abs = 60 },
    lua = records_batched,
    c = ("bench/c/chan_spsc %d %d 24"):format(N, CAP),
  },
}
