-- wrk script of the HTTP benchmarks (bench/wrk.py): GET over the request paths listed one per line in
-- the file named by WRK_PATHS_FILE, each thread walking the list from its own starting point so that
-- the threads do not ask for the same path at the same moment.
local paths_file = os.getenv("WRK_PATHS_FILE") or error("WRK_PATHS_FILE is not set")

local next_thread_id = 0
function setup(thread)  -- runs in wrk's main Lua state, once per thread
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
end

local requests = {}
local index = 0
function init(_args)  -- runs in each thread's own Lua state
  for path in io.lines(paths_file) do
    requests[#requests + 1] = wrk.format("GET", path)
  end
  if #requests == 0 then error("no paths in " .. paths_file) end
  index = (thread_id * 7919) % #requests  -- a prime stride apart
end

function request()
  index = index % #requests + 1
  return requests[index]
end
