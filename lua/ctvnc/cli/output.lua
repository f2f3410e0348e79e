--- ctvnc.cli.output: what the command writes. Text made safe for a
-- terminal, CSV cells a spreadsheet will not run, the one row writer for
-- every format, and the progress line on stderr.
local json = require("cjson.safe").new()

local ipairs, tonumber, tostring = ipairs, tonumber, tostring
local format, concat, floor = string.format, table.concat, math.floor

local _M = {}

--- Text that came from a server or an input file, safe on a terminal: ASCII
-- and C1 control characters go (an escape sequence cannot recolour or
-- rewrite the screen), tabs and line ends become spaces.
function _M.printable(s)
  s = tostring(s == nil and "" or s)
  s = s:gsub("[\t\r\n]", " "):gsub("[%z\1-\31\127]", ""):gsub("\194[\128-\159]", "")
  return s
end
local printable = _M.printable

--- An RFC 4180 cell that a spreadsheet will not run: one that would start
-- with = + - @ (or a tab or CR) is prefixed with '.
function _M.csv_cell(v)
  v = v == nil and "" or tostring(v)
  if v:find("^[=+%-@\t\r]") then v = "'" .. v end
  if v:find('[,"\r\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end
local csv_cell = _M.csv_cell

--- The one output writer: rows of `columns` in the chosen format.
-- `text(row) -> fields` gives a row's text line (default: the columns).
-- JSON rows are held until close(), so the output is one valid document
-- even when the run is interrupted.
function _M.writer(out, fmt, columns, text)
  local rows, started = {}, false
  local w = {}
  function w.row(r)
    if fmt == "json" then
      rows[#rows + 1] = r
    elseif fmt == "csv" then
      if not started then out:write(concat(columns, ","), "\r\n") end
      local cells = {}
      for i, k in ipairs(columns) do cells[i] = csv_cell(r[k]) end
      out:write(concat(cells, ","), "\r\n")
    else
      local fields = text and text(r) or {}
      if not text then
        for i, k in ipairs(columns) do fields[i] = r[k] end
      end
      for i = 1, #fields do fields[i] = printable(fields[i]) end
      out:write(concat(fields, "\t"), "\n")
    end
    started = true
  end
  function w.close()
    if fmt == "json" then
      local doc = {}
      for i, r in ipairs(rows) do
        local o = {}
        for _, k in ipairs(columns) do o[k] = r[k] end
        doc[i] = o
      end
      out:write((json.encode(doc):gsub("^{}$", "[]")), "\n")
    elseif fmt == "csv" and not started then
      out:write(concat(columns, ","), "\r\n")
    end
    out:flush()
  end
  return w
end

--- Seconds as the ETA of a progress line: 42s, 3m05s, 1h02m.
local function clock(s)
  s = floor(s + 0.5)
  if s < 60 then return s .. "s" end
  if s < 3600 then return format("%dm%02ds", floor(s / 60), s % 60) end
  return format("%dh%02dm", floor(s / 3600), floor(s / 60) % 60)
end

--- A progress line on stderr that fits the terminal and redraws in place:
-- `[#####.....] 5/10  12.3/s  ETA 1s  1 failed`. Plain (no escape
-- sequences) for NO_COLOR or TERM=dumb. finish(interrupted) ends it; when
-- a signal cut the run it draws it once more saying how many were interrupted.
function _M.progress(err, width, plain, now)
  local start, last = now(), -1
  local p = {}
  local shown, state = false, nil
  local function draw(done, total, failed, interrupted)
    local t = now()
    local rate = done / math.max(t - start, 1e-3)
    local tail = format(" %d/%d  %.1f/s", done, total, rate)
    if done > 0 and done < total and not interrupted then
      tail = tail .. "  ETA " .. clock((total - done) / rate)
    end
    local bad = (failed or 0) > 0 and format("  %d failed", failed) or ""
    if interrupted then bad = bad .. format("  %d interrupted", interrupted) end
    local room = width - 1 - #tail - #bad - 2
    local bar = ""
    if room >= 5 then
      local filled = total > 0 and floor(room * done / total) or room
      bar = "[" .. ("#"):rep(filled) .. ("."):rep(room - filled) .. "]"
    end
    local line = (bar .. tail .. bad):sub(1, width - 1)
    if plain then
      err:write("\r", line, (" "):rep(width - 1 - #line))
    else
      if bad ~= "" and #bar + #tail + #bad <= width - 1 then
        line = bar .. tail .. "\27[31m" .. bad .. "\27[0m"
      end
      err:write("\r\27[K", line)
    end
    shown = true
    err:flush()
  end
  function p.update(done, total, failed)
    state = { done, total, failed }
    local t = now()
    if done < total and t - last < 0.1 then return end
    last = t
    draw(done, total, failed)
  end
  function p.finish(interrupted)
    if interrupted and interrupted > 0 and state then
      draw(state[1] - interrupted, state[2], (state[3] or 0) - interrupted, interrupted)
    end
    if shown then err:write("\n") err:flush() end
    shown = false
  end
  return p
end

--- The width of the terminal on stderr: COLUMNS, else what stty says.
function _M.term_width(env)
  local n = tonumber(env("COLUMNS") or "")
  if n and n >= 10 then return floor(n) end
  local f, size = io.popen("stty size <&2 2>/dev/null"), nil
  if f then size = f:read("*a") f:close() end
  n = tonumber(size and size:match("^%d+%s+(%d+)") or "")
  return n and n >= 10 and n or 80
end

function _M.stderr_is_tty()
  local ok = os.execute("test -t 2")
  return ok == true or ok == 0
end

return _M
