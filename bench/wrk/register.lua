-- POST /api/v1/auth/register with a fresh address every request (BENCH_EMAIL_PREFIX, then the
-- thread's number and a counter): each success hashes a password with argon2id and inserts one
-- account. Like login, this measures the password hash and the insert, and is reported, not
-- held to a target.
local bench = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

setup = bench.number_threads

local counter = 0
local prefix = os.getenv("BENCH_EMAIL_PREFIX") or "bench"
local headers = { ["Content-Type"] = "application/json" }

function request()
  counter = counter + 1
  local body = string.format('{"email":"%s-%d-%d@example.com","password":"bench-password-1234"}',
    prefix, thread_index or 0, counter)
  return wrk.format("POST", "/api/v1/auth/register", headers, body)
end

done = bench.json_done
