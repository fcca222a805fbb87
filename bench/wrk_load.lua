-- wrk script for every load phase of the benchmark; configured by environment variables because
-- wrk only hands its arguments to the worker threads, and the main thread must know the mode.
--
-- BENCH_MODE    closed: plain wrk (as fast as possible); open: constant offered rate, latency
--               measured from each request's *intended* send time (wrk2's correction for
--               coordinated omission; run with one connection per thread, -t N -c N)
-- BENCH_RATE    open mode: requests per second per thread
-- BENCH_PAGES   "cycle:FIRST:LAST" (round robin), "uniform:N:SEED" (pages 1-N, equally likely)
--               or "zipf:N:S:SEED" (page k of 1-N with weight 1/k^S)
-- BENCH_OUT     JSON file written at the end: totals, latency histogram (open mode), and
--               responses and cache hits per 100 ms bin of CLOCK_MONOTONIC (bin_all, bin_hit)
-- BENCH_HIT_HEADER  response header whose presence/value marks a cache hit (empty: not tracked)

local ffi = require("ffi")
ffi.cdef([[
struct bench_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk_id, struct bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local ts = ffi.new("struct bench_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local mode = os.getenv("BENCH_MODE") or "closed"
local hit_header = os.getenv("BENCH_HIT_HEADER") or ""
local BIN_US = 100000

-- Latency histogram bucket: three significant digits (<= 1% error), in microseconds.
local function bucket(us)
  if us < 100 then
    return math.floor(us)
  end
  local step = 10 ^ (math.floor(math.log10(us)) - 2)
  return math.floor(us / step) * step
end

---------------------------------------------------------------------------------------------
-- main thread: hand out thread ids, collect every thread's tables at the end
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

---------------------------------------------------------------------------------------------
-- worker threads
local pick_page
-- globals, not locals: the main thread reads them with thread:get() at the end
-- (flat tables only: wrk cannot copy nested ones between threads)
hist, bin_all, bin_hit = {}, {}, {}
sent, completed, non2xx, hits = 0, 0, 0, 0
local interval_us, next_slot, slot, free_at, actual_send = 0, nil, nil, 0, 0
local pending = false

local function page_picker(spec, thread_id)
  local kind, a, b, c = spec:match("^(%a+):([%d.]+):([%d.]+):?([%d.]*)$")
  if kind == "cycle" then
    local first, last = tonumber(a), tonumber(b)
    local n = last - first + 1
    local i = thread_id % n
    return function()
      i = (i + 1) % n
      return first + i
    end
  elseif kind == "uniform" then
    local n = tonumber(a)
    math.randomseed(tonumber(b) * 1000 + thread_id)
    return function()
      return math.random(1, n)
    end
  elseif kind == "zipf" then
    local n, s = tonumber(a), tonumber(b)
    math.randomseed((tonumber(c) or 1) * 1000 + thread_id)
    local cdf, total = {}, 0
    for k = 1, n do
      total = total + 1 / k ^ s
      cdf[k] = total
    end
    return function()
      local u = math.random() * total
      local lo, hi = 1, n
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if cdf[mid] < u then lo = mid + 1 else hi = mid end
      end
      return lo
    end
  end
  error("BENCH_PAGES must be cycle:FIRST:LAST, uniform:N:SEED or zipf:N:S:SEED, got " .. spec)
end

function init(args)
  pick_page = page_picker(os.getenv("BENCH_PAGES") or "cycle:1:1", id or 0)
  if mode == "open" then
    interval_us = 1000000 / tonumber(os.getenv("BENCH_RATE"))
  end
end

if mode == "open" then
  -- Called when the connection is free (before each request): book the next slot of this
  -- thread's fixed schedule and wait for it. The schedule never slips, so a slow response makes
  -- the following requests late, and their latency counts from the slot, not from the send.
  function delay()
    local now = now_us()
    if next_slot == nil then
      next_slot = now + math.random() * interval_us
    end
    slot, free_at, pending = next_slot, now, true
    next_slot = next_slot + interval_us
    local wait_ms = (slot - now) / 1000
    if wait_ms <= 0 then
      return 0
    end
    return math.ceil(wait_ms)
  end
end

function request()
  if mode ~= "open" or pending then
    actual_send = now_us()
    sent = sent + 1
  end
  return wrk.format("GET", "/orders/" .. pick_page())
end

function response(status, headers, body)
  local now = now_us()
  completed = completed + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
  if mode == "open" and pending then
    pending = false
    -- Late because the server was still busy with the previous request: count from the slot.
    -- Late only because the timer has 1 ms resolution: count from the actual send.
    local start = actual_send
    if free_at > slot then
      start = slot
    end
    local b = bucket(now - start)
    hist[b] = (hist[b] or 0) + 1
  end
  if hit_header ~= "" then
    local bin = math.floor(now / BIN_US)
    bin_all[bin] = (bin_all[bin] or 0) + 1
    local value = headers[hit_header]
    if value ~= nil and value ~= "MISS" and value ~= "BYPASS" and value ~= "False" then
      bin_hit[bin] = (bin_hit[bin] or 0) + 1
      hits = hits + 1
    end
  end
end

---------------------------------------------------------------------------------------------
-- main thread again: merge and write one JSON document
local function json_map(t)
  local parts = {}
  for k, v in pairs(t) do
    parts[#parts + 1] = string.format('"%d":%d', k, v)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function add_into(into, from)
  for k, v in pairs(from or {}) do
    into[k] = (into[k] or 0) + v
  end
end

function done(summary, latency, requests)
  local merged_hist, merged_all, merged_hit = {}, {}, {}
  local totals = { sent = 0, completed = 0, non2xx = 0, hits = 0 }
  for _, thread in ipairs(threads) do
    for k, _ in pairs(totals) do
      totals[k] = totals[k] + (thread:get(k) or 0)
    end
    add_into(merged_hist, thread:get("hist"))
    add_into(merged_all, thread:get("bin_all"))
    add_into(merged_hit, thread:get("bin_hit"))
  end
  local e = summary.errors
  local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  out:write(string.format(
    '{"mode":"%s","duration_us":%d,"requests":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"sent":%d,"completed":%d,"non2xx":%d,"hits":%d,'
      .. '"wrk_latency_us":{"p50":%d,"p90":%d,"p99":%d,"p99.9":%d,"max":%d,"mean":%.1f},'
      .. '"hist_us":%s,"bin_all":%s,"bin_hit":%s}\n',
    mode, summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    totals.sent, totals.completed, totals.non2xx, totals.hits,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    json_map(merged_hist), json_map(merged_all), json_map(merged_hit)
  ))
  out:close()
end
