-- bench/lockd-lease.lua: wrk script for bench-lockd.sh: acquire/release
-- cycles. Each wrk thread owns $LOCKD_PER_THREAD repositories (names and
-- tokens from the file $LOCKD_TOKENS, lines "REPO TOKEN"; thread t takes
-- lines t*PER+1 .. (t+1)*PER), twice as many as its connections, so an
-- acquire never meets a live lease: every cycle is
--   POST /v1/repos/R/lease {"ttl": 30}         -> 201, lease_id, fencing_token
--   DELETE /v1/repos/R/lease/ID?fencing_token=F -> 200
-- A connection asks for a release when one is pending in its thread, else
-- acquires a free repository of its thread. The responses name their
-- repository ("repo"), which is how a response is matched to its lease.
-- wrk 4.1 was seen to call request() once more than a thread has
-- connections (at start-up, before any answer, no socket error reported),
-- which with one repository per connection left none free. The spare
-- repositories cover it. A 409 lease_held goes back to the end of the free
-- list, to be asked again: on replicas of a bucket state, a replica that has
-- not yet read the release made through another refuses from its cached
-- record for up to state_head_cache_ms ("refused" in the summary counts them).
-- Any other 409 takes its repository out of the rotation.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local free, pending, tokens = {}, {}, {}
acquired, released, failed, stray, issued, answered = 0, 0, 0, 0, 0, 0

function init(args)
  local per = tonumber(os.getenv("LOCKD_PER_THREAD"))
  local n = 0
  for line in io.lines(os.getenv("LOCKD_TOKENS")) do
    local r, t = line:match("^(%S+)%s+(%S+)$")
    if r then
      if n >= tid * per and n < (tid + 1) * per then
        tokens[r] = "Bearer " .. t
        table.insert(free, r)
      end
      n = n + 1
    end
  end
end

function request()
  issued = issued + 1
  local p = table.remove(pending)
  if p then
    return wrk.format("DELETE", "/v1/repos/" .. p.repo .. "/lease/" .. p.id ..
                      "?fencing_token=" .. p.fence, {["Authorization"] = tokens[p.repo]})
  end
  local r = table.remove(free, 1)
  if not r then
    stray = stray + 1 -- cannot happen with PER >= connections per thread
    r = next(tokens)
    return wrk.format("GET", "/v1/repos/" .. r .. "/head", {["Authorization"] = tokens[r]})
  end
  return wrk.format("POST", "/v1/repos/" .. r .. "/lease",
                    {["Authorization"] = tokens[r], ["Content-Type"] = "application/json"},
                    '{"ttl":30}')
end

function response(status, headers, body)
  answered = answered + 1
  local r = body:match('"repo":%s*"([^"]+)"')
  if status == 201 and r then
    local id = body:match('"lease_id":%s*"(%x+)"')
    local f = body:match('"fencing_token":%s*(%d+)')
    acquired = acquired + 1
    table.insert(pending, {repo = r, id = id, fence = f})
  elseif status == 200 and r and body:find('"released"', 1, true) then
    released = released + 1
    table.insert(free, r)
  elseif status == 409 and body:match('repository (%S+) is leased') then
    failed = failed + 1 -- the refusal names its repository only in its message
    table.insert(free, body:match('repository (%S+) is leased'))
  elseif status ~= 200 then
    failed = failed + 1
    if failed <= 3 then io.write("lease-debug: " .. status .. " " .. body .. "\n") end
  end
end

function done(summary, latency, requests)
  local a, rel, f, s = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("acquired")
    rel = rel + t:get("released")
    f = f + t:get("failed")
    s = s + t:get("stray")
  end
  local secs = summary.duration / 1e6
  io.write(string.format("lease-cycles: %.1f cycles/s (acquired %d, released %d, refused %d, no free repository %d)\n",
                         rel / secs, a, rel, f, s))
end
