local helpers = require "helpers"
local socket = require "socket"

-- Issue 20.5: `make console-demo` and examples/openresty/run.sh stop
-- everything they started on a signal, a second Ctrl-C included, and leave
-- no sleep behind. Each runs in a process group of its own (setsid), gets
-- SIGINT twice as a terminal's Ctrl-C would send it, and then no process
-- of that group, none of their descendants and none of the nginx daemons
-- they started (found by their pid files) may be left: all checked by pid.
local ROOT = helpers.ROOT
local read_file, write_file = helpers.read_file, helpers.write_file

describe("the demo and run.sh on Ctrl-C #novalgrind", function()
  local dir

  setup(function()
    dir = helpers.run("mktemp -d"):gsub("%s+$", "")
    assert(os.execute("chmod 755 " .. dir))
  end)

  teardown(function()
    if dir then helpers.run("rm -rf " .. dir) end
  end)

  --- The living processes (zombies are dead): pid -> { ppid, pgid }.
  local function processes()
    local out = {}
    for line in helpers.run("ps -e -o pid= -o ppid= -o pgid= -o stat="):gmatch("[^\n]+") do
      local pid, ppid, pgid, stat = line:match("(%d+)%s+(%d+)%s+(%d+)%s+(%S+)")
      if pid and not stat:find("^Z") then
        out[tonumber(pid)] = { ppid = tonumber(ppid), pgid = tonumber(pgid) }
      end
    end
    return out
  end

  --- The pids of `roots`, their descendants and the members of group pgid.
  local function family(roots, pgid)
    local procs, set = processes(), {}
    for _, r in ipairs(roots) do if procs[r] then set[r] = true end end
    for pid, p in pairs(procs) do if p.pgid == pgid then set[pid] = true end end
    local grew = true
    while grew do
      grew = false
      for pid, p in pairs(procs) do
        if not set[pid] and set[p.ppid] then set[pid], grew = true, true end
      end
    end
    return set
  end

  --- Starts `cmd` in a session and process group of its own, SIGINT and
  -- SIGQUIT as a terminal leaves them (a shell's background job ignores
  -- them, and a shell cannot undo that): its pid (= pgid).
  local function start(cmd, log)
    local launch = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
      .. "signal.signal(signal.SIGQUIT, signal.SIG_DFL); os.setsid(); "
      .. "os.execvp('sh', ['sh', '-c', sys.argv[1]])"
    local out = helpers.run(("cd %s && python3 -c %q %q > %s 2>&1 < /dev/null & echo $!")
      :format(ROOT, launch, "exec " .. cmd, log))
    return assert(tonumber(out:match("%d+")), out)
  end

  local function wait_for(pred, seconds)
    local deadline = helpers.now() + seconds
    while helpers.now() < deadline do
      if pred() then return true end
      socket.sleep(0.05)
    end
    return pred()
  end

  local function pid_in(file)
    return tonumber((read_file(file) or ""):match("%d+") or "")
  end

  --- Ctrl-C twice to group pgid, the second while the first's stop runs;
  -- then every pid of `watched` must be gone within 20 s.
  local function interrupt_twice(pgid, watched)
    local n = 0
    for _ in pairs(watched) do n = n + 1 end
    assert.is_true(n >= 2, "too few processes watched")
    assert(os.execute(("kill -INT -%d"):format(pgid)))
    socket.sleep(0.1)
    os.execute(("kill -INT -%d 2> /dev/null"):format(pgid))
    local left
    wait_for(function()
      local procs = processes()
      left = {}
      for pid in pairs(watched) do if procs[pid] then left[#left + 1] = pid end end
      for pid, p in pairs(procs) do if p.pgid == pgid then left[#left + 1] = pid end end
      return #left == 0
    end, 20)
    local names = {}
    for _, pid in ipairs(left) do
      names[#names + 1] = pid .. " " .. (read_file("/proc/" .. pid .. "/cmdline") or "")
        :gsub("%z", " ")
    end
    -- what the script failed to stop, stopped here (these pids only)
    for _, pid in ipairs(left) do os.execute(("kill -KILL %d 2> /dev/null"):format(pid)) end
    assert.are.same({}, names, "processes left")
  end

  it("make console-demo: everything it started stops on two Ctrl-C", function()
    local log = dir .. "/demo.out"
    -- deps is checked by `make test` itself (it would install packages)
    local pid = start("make --no-print-directory -o deps console-demo", log)
    finally(function() os.execute(("kill -KILL -%d 2> /dev/null"):format(pid)) end)
    assert.is_true(wait_for(function()
      local text = read_file(log) or ""
      return text:find("Ctrl-C stops everything.", 1, true) or text:find("stopped", 1, true)
    end, 90) and (read_file(log) or ""):find("Ctrl-C stops everything.", 1, true) ~= nil,
      read_file(log))
    local demo = (read_file(log) or ""):match("Logs: (%S+)/gw/access%.log")
    assert.truthy(demo, read_file(log))
    local roots = { pid, pid_in(demo .. "/gw/nginx.pid"), pid_in(demo .. "/sim/nginx.pid") }
    assert.are.equal(3, #roots, "no gateway or simulator pid")
    local watched = family(roots, pid)
    -- Xvnc, two websockify, the sleep, the shells, two nginx masters and workers
    local count = 0
    for _ in pairs(watched) do count = count + 1 end
    assert.is_true(count >= 10, "only " .. count .. " processes")
    interrupt_twice(pid, watched)
    assert.truthy(read_file(log):find("console-demo: stopped", 1, true), read_file(log))
    assert.is_nil(io.open(demo .. "/gw/nginx.conf"), "its directory is left")
  end)

  it("run.sh start: a Ctrl-C while it starts stops what it started, twice too", function()
    -- a simulator whose nginx start is held (SIM_NGINX), the moment to interrupt
    local gw, mark = dir .. "/gw", dir .. "/held"
    local held = dir .. "/held-nginx"
    write_file(held, ("#!/bin/sh\nnginx \"$@\" || exit\n: > %s\nexec sleep 30\n"):format(mark))
    assert(os.execute("chmod 755 " .. held))
    local pid = start(("env SIM_NGINX=%s sh examples/openresty/run.sh start %s"):format(held, gw),
      dir .. "/run.out")
    finally(function() os.execute(("kill -KILL -%d 2> /dev/null"):format(pid)) end)
    assert.is_true(wait_for(function() return io.open(mark) ~= nil end, 30), read_file(dir .. "/run.out"))
    local sim = pid_in(gw .. "/sim/nginx.pid")
    assert.truthy(sim, "the simulator wrote no pid")
    interrupt_twice(pid, family({ pid, sim }, pid))
    -- and nothing was left running for a later stop
    assert.is_nil(io.open(gw .. "/env"))
  end)

  it("run.sh: an unknown verb or a missing DIR prints the usage", function()
    for _, args in ipairs({ "restart " .. dir .. "/x", "start", "" }) do
      local out, ok = helpers.run(("sh %s/examples/openresty/run.sh %s 2>&1"):format(ROOT, args))
      assert.is_false(ok, args)
      assert.truthy(out:find("usage: run.sh start DIR | run.sh stop DIR", 1, true), out)
    end
    assert.is_nil(io.open(dir .. "/x"))
  end)
end)
