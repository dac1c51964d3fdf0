-- GET /api/v1/auth/me with a Bearer access token. BENCH_TOKENS names a file of access tokens,
-- one a line (one session each); each request takes the next token round-robin, so the load is
-- spread over several sessions as real clients would spread it. The requests are formatted once.
local bench = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local tokens, n, i

function init(args)
  local all = bench.read_lines(os.getenv("BENCH_TOKENS"))
  tokens = {}
  for _, t in ipairs(all) do
    tokens[#tokens + 1] = wrk.format("GET", "/api/v1/auth/me",
      { ["Authorization"] = "Bearer " .. t })
  end
  n = #tokens
  i = 0
end

function request()
  i = i % n + 1
  return tokens[i]
end

done = bench.json_done
