-- GET the URL's path (wrk's default request), report as JSON. Used for /health and the
-- hello-world reference.
local bench = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
done = bench.json_done
