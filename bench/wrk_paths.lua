-- wrk script of `make bench-http` (bench/http.py): GET /api/orders/<uid> over the uids listed one per
-- line in the file named by WRK_UIDS_FILE, each thread walking the list from its own starting point
-- so that the threads do not ask for the same order at the same moment.
local uids_file = os.getenv("WRK_UIDS_FILE") or error("WRK_UIDS_FILE is not set")

local next_thread_id = 0
function setup(thread)  -- runs in wrk's main Lua state, once per thread
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
end

local paths = {}
local index = 0
function init(_args)  -- runs in each thread's own Lua state
  for uid in io.lines(uids_file) do
    paths[#paths + 1] = wrk.format("GET", "/api/orders/" .. uid)
  end
  if #paths == 0 then error("no uids in " .. uids_file) end
  index = (thread_id * 7919) % #paths  -- a prime stride apart
end

function request()
  index = index % #paths + 1
  return paths[index]
end
