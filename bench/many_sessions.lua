-- wrk script for the many/* cases of bench/decision_bench.py: every request carries a
-- Cookie header picked at random among the lines of the file named after `--`.
-- The requests are formatted once, in init, so wrk spends no Lua time per request on it.

local requests = {}

function init(args)
  math.randomseed(os.time())
  for line in io.lines(args[1]) do
    if line ~= "" then
      local headers = {}
      for name, value in pairs(wrk.headers) do
        headers[name] = value
      end
      headers["Cookie"] = line
      requests[#requests + 1] = wrk.format(nil, nil, headers)
    end
  end
  if #requests == 0 then
    error("no cookies in " .. args[1])
  end
end

function request()
  return requests[math.random(#requests)]
end
