-- wrk script: PUT a 100-byte value to one of 1000 keys per request.
local n = 0
request = function()
  n = n + 1
  return wrk.format("PUT", "/k/key-" .. (n % 1000), nil, string.rep("v", 100))
end
