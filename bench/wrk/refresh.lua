-- POST /api/v1/auth/refresh in a closed loop. Every refresh spends its refresh token and
-- answers a new one, so each token can be sent once.
--
-- wrk's Lua API does not say which connection a request or a response belongs to, so instead of
-- "one session per connection" each thread keeps a FIFO pool of live refresh tokens (one session
-- each, logged in beforehand, BENCH_TOKENS: one refresh token a line, shared out among the
-- threads). request() takes the oldest token from the pool; response() puts back the new one it
-- reads from the body. A request in flight holds exactly one token, so a pool larger than the
-- thread's connections never runs dry. Spares are needed: before the run wrk calls request() once
-- to check it (script_verify_request), and that token is never sent; run.sh logs in a few
-- sessions more than there are connections. A failed refresh loses its token (wrk counts it as a
-- status error). When the pool is empty the request goes out with a dummy token, which gets a
-- 401 and shows up as errors: the run is then invalid, never silently fast.
local bench = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local pool, head, tail = {}, 1, 0

setup = bench.number_threads

function init(args)
  local all = bench.read_lines(os.getenv("BENCH_TOKENS"))
  local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
  for k, t in ipairs(all) do
    if (k - 1) % threads == (thread_index or 0) then
      tail = tail + 1
      pool[tail] = t
    end
  end
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  local token = "empty-pool"
  if head <= tail then
    token = pool[head]
    pool[head] = nil
    head = head + 1
  end
  return wrk.format("POST", "/api/v1/auth/refresh", headers,
    '{"refreshToken":"' .. token .. '"}')
end

function response(status, hdrs, body)
  local token = body and body:match('"refreshToken"%s*:%s*"([^"]+)"')
  if status == 200 and token then
    tail = tail + 1
    pool[tail] = token
  end
end

done = bench.json_done
