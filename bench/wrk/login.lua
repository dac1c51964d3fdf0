-- POST /api/v1/auth/login with one account's credentials (BENCH_EMAIL, BENCH_PASSWORD). Each
-- success verifies an argon2id hash and creates a session: this measures the password hash, and
-- is reported, not held to a target.
local bench = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

wrk.method = "POST"
wrk.path = "/api/v1/auth/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"email":"%s","password":"%s"}',
  os.getenv("BENCH_EMAIL"), os.getenv("BENCH_PASSWORD"))

done = bench.json_done
