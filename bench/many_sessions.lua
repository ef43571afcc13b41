-- wrk script for the many/* cases of bench/decision_bench.py: every request carries a
-- Cookie header picked at random among the lines of the file named after `--`; with a
-- second argument `sequential`, the cookies are sent in turn instead (the warm-up: every
-- session is asked for once per pass). The requests are formatted once, in init, so wrk
-- spends no Lua time per request on it.

local requests = {}
local sequential = false
local next_index = 0

function init(args)
  math.randomseed(os.time())
  sequential = args[2] == "sequential"
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
  if sequential then
    next_index = next_index % #requests + 1
    return requests[next_index]
  end
  return requests[math.random(#requests)]
end
