-- Each request asks the next Worker in turn: w1.rr.test, w2.rr.test, ... wN.rr.test, w1...
-- N comes from RR_WORKERS (benches/round-robin.sh).
local n = tonumber(os.getenv("RR_WORKERS"))
local i = 0
request = function()
  i = i % n + 1
  return wrk.format("GET", "/hello", { ["Host"] = "w" .. i .. ".rr.test" })
end
