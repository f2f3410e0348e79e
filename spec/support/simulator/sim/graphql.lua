-- CloudTower simulator: a GraphQL reader for the subset towers are asked
-- (no ngx: it runs in plain Lua too). parse(text) reads one document:
-- operations (`query`, optionally named, with variable definitions and
-- default values, or the `{ ... }` shorthand), fields with aliases,
-- arguments (variables and literals of every kind) and selection sets;
-- whitespace, commas and comments are free. Fragments and directives are
-- refused (nobody asks a tower with them here). validate(doc, schema, ...)
-- applies the graphql-js rules a query of that shape can break, with
-- graphql-js's wording; coerce() reads the request's variables as
-- graphql-js does. Messages name no value of a variable.

local byte, sub, find, format, concat = string.byte, string.sub, string.find, string.format,
  table.concat
local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber

local _M = {}

---------------------------------------------------------------------------
-- lexer
---------------------------------------------------------------------------

local PUNCT = { ["!"] = true, ["$"] = true, ["&"] = true, ["("] = true, [")"] = true,
  [":"] = true, ["="] = true, ["@"] = true, ["["] = true, ["]"] = true, ["{"] = true,
  ["|"] = true, ["}"] = true }

local ESC = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r",
  t = "\t" }

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then
    return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
  end
  return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

-- tokens: { kind = "punct"|"name"|"int"|"float"|"string"|"spread"|"eof", value, pos }
local function lex(src)
  local toks, i, n = {}, 1, #src
  local line_starts = { 1 }
  local function err(pos, msg)
    error({ syntax = true, message = "Syntax Error: " .. msg, pos = pos }, 0)
  end
  while true do
    -- ignored: BOM, whitespace, line terminators, commas, comments
    while i <= n do
      local c = byte(src, i)
      if c == 32 or c == 9 or c == 44 then i = i + 1
      elseif c == 10 then i = i + 1; line_starts[#line_starts + 1] = i
      elseif c == 13 then
        i = i + 1
        if byte(src, i) == 10 then i = i + 1 end
        line_starts[#line_starts + 1] = i
      elseif c == 35 then
        local e = find(src, "[\r\n]", i)
        i = e or n + 1
      elseif c == 0xEF and sub(src, i, i + 2) == "\239\187\191" then i = i + 3
      else break end
    end
    if i > n then
      toks[#toks + 1] = { kind = "eof", pos = i }
      break
    end
    local c = sub(src, i, i)
    if PUNCT[c] then
      toks[#toks + 1] = { kind = "punct", value = c, pos = i }
      i = i + 1
    elseif c == "." then
      if sub(src, i, i + 2) ~= "..." then err(i, 'Unexpected character: ".".') end
      toks[#toks + 1] = { kind = "spread", value = "...", pos = i }
      i = i + 3
    elseif find(c, "[_A-Za-z]") then
      local _, e = find(src, "^[_A-Za-z][_0-9A-Za-z]*", i)
      toks[#toks + 1] = { kind = "name", value = sub(src, i, e), pos = i }
      i = e + 1
    elseif find(c, "[%-0-9]") then
      local s, e = find(src, "^%-?0", i)
      if not s then s, e = find(src, "^%-?[1-9][0-9]*", i) end
      if not s then err(i, "Invalid number, expected digit but got: " .. format("%q", sub(src, i + 1, i + 1)) .. ".") end
      local kind = "int"
      local fs, fe = find(src, "^%.[0-9]+", e + 1)
      if fs then kind, e = "float", fe end
      local xs, xe = find(src, "^[eE][%+%-]?[0-9]+", e + 1)
      if xs then kind, e = "float", xe end
      if find(src, "^[_A-Za-z%.]", e + 1) then
        err(e + 1, "Invalid number, expected digit but got: \"" .. sub(src, e + 1, e + 1) .. "\".")
      end
      toks[#toks + 1] = { kind = kind, value = sub(src, i, e), pos = i }
      i = e + 1
    elseif c == '"' then
      local start = i
      if sub(src, i, i + 2) == '"""' then
        local e = find(src, '"""', i + 3, true)
        if not e then err(n + 1, "Unterminated string.") end
        toks[#toks + 1] = { kind = "string", value = sub(src, i + 3, e - 1), pos = start }
        i = e + 3
      else
        local out = {}
        i = i + 1
        while true do
          if i > n then err(i, "Unterminated string.") end
          local ch = sub(src, i, i)
          if ch == '"' then i = i + 1; break end
          if ch == "\n" or ch == "\r" then err(i, "Unterminated string.") end
          if ch == "\\" then
            local e = sub(src, i + 1, i + 1)
            if ESC[e] then out[#out + 1] = ESC[e]; i = i + 2
            elseif e == "u" and find(src, "^%x%x%x%x", i + 2) then
              out[#out + 1] = utf8_char(tonumber(sub(src, i + 2, i + 5), 16))
              i = i + 6
            else err(i, "Invalid character escape sequence.") end
          else
            out[#out + 1] = ch
            i = i + 1
          end
        end
        toks[#toks + 1] = { kind = "string", value = concat(out), pos = start }
      end
    else
      err(i, format("Unexpected character: %q.", c))
    end
  end
  return toks, line_starts
end

local function location(line_starts, pos)
  local line = 1
  for k = 1, #line_starts do
    if line_starts[k] <= pos then line = k else break end
  end
  return { line = line, column = pos - line_starts[line] + 1 }
end

---------------------------------------------------------------------------
-- parser
---------------------------------------------------------------------------

local function describe(t)
  if t.kind == "eof" then return "<EOF>" end
  if t.kind == "punct" or t.kind == "spread" then return '"' .. t.value .. '"' end
  if t.kind == "name" then return 'Name "' .. t.value .. '"' end
  if t.kind == "string" then return 'String "' .. t.value .. '"' end
  if t.kind == "int" then return 'Int "' .. t.value .. '"' end
  return 'Float "' .. t.value .. '"'
end

local function parser(toks)
  local p = { i = 1 }
  local function peek() return toks[p.i] end
  local function fail(t, msg)
    error({ syntax = true, message = "Syntax Error: " .. msg, pos = t.pos }, 0)
  end
  local function next_tok() local t = toks[p.i]; p.i = p.i + 1; return t end
  local function is(value) local t = peek(); return t.kind == "punct" and t.value == value end
  local function expect(value)
    local t = next_tok()
    if t.kind ~= "punct" or t.value ~= value then
      fail(t, 'Expected "' .. value .. '", found ' .. describe(t) .. ".")
    end
    return t
  end
  local function name()
    local t = next_tok()
    if t.kind ~= "name" then fail(t, "Expected Name, found " .. describe(t) .. ".") end
    return t.value, t.pos
  end

  local value
  function value(const)
    local t = peek()
    if t.kind == "punct" and t.value == "$" and not const then
      next_tok()
      local v, pos = name()
      return { kind = "variable", name = v, pos = pos }
    elseif t.kind == "punct" and t.value == "[" then
      next_tok()
      local items = {}
      while not is("]") do items[#items + 1] = value(const) end
      next_tok()
      return { kind = "list", items = items, pos = t.pos }
    elseif t.kind == "punct" and t.value == "{" then
      next_tok()
      local fields, order = {}, {}
      while not is("}") do
        local k, kpos = name()
        expect(":")
        if fields[k] then
          error({ message = 'There can be only one input field named "' .. k .. '".', pos = kpos }, 0)
        end
        fields[k] = value(const)
        order[#order + 1] = k
      end
      next_tok()
      return { kind = "object", fields = fields, order = order, pos = t.pos }
    elseif t.kind == "int" or t.kind == "float" or t.kind == "string" then
      next_tok()
      return { kind = t.kind, value = t.value, pos = t.pos }
    elseif t.kind == "name" then
      next_tok()
      if t.value == "true" or t.value == "false" then
        return { kind = "boolean", value = t.value == "true", pos = t.pos }
      elseif t.value == "null" then
        return { kind = "null", pos = t.pos }
      end
      return { kind = "enum", value = t.value, pos = t.pos }
    end
    fail(t, "Unexpected " .. describe(t) .. ".")
  end

  local function type_ref()
    local t = peek()
    local ty
    if is("[") then
      next_tok()
      ty = { kind = "LIST", of = type_ref() }
      expect("]")
    else
      local n = name()
      ty = { kind = "NAMED", name = n }
    end
    if is("!") then
      next_tok()
      ty = { kind = "NON_NULL", of = ty }
    end
    ty.pos = t.pos
    return ty
  end

  local function no_directives()
    if is("@") then
      error({ message = "Directives are not supported by this simulator.", pos = peek().pos }, 0)
    end
  end

  local selection_set
  function selection_set()
    expect("{")
    local sels = {}
    repeat
      local t = peek()
      if t.kind == "spread" then
        error({ message = "Fragments are not supported by this simulator.", pos = t.pos }, 0)
      end
      local n1, pos = name()
      local alias, fname = nil, n1
      if is(":") then
        next_tok()
        alias, fname = n1, name()
      end
      local args, arg_order = {}, {}
      if is("(") then
        next_tok()
        repeat
          local an, apos = name()
          expect(":")
          if args[an] then
            error({ message = 'There can be only one argument named "' .. an .. '".', pos = apos }, 0)
          end
          args[an] = value(false)
          arg_order[#arg_order + 1] = an
        until is(")")
        next_tok()
      end
      no_directives()
      local sub_sel
      if is("{") then sub_sel = selection_set() end
      sels[#sels + 1] = { alias = alias, name = fname, key = alias or fname, args = args,
        arg_order = arg_order, selections = sub_sel, pos = pos }
    until is("}")
    next_tok()
    return sels
  end

  function p.document()
    local ops = {}
    repeat
      local t = peek()
      local op = { pos = t.pos, vars = {}, var_order = {} }
      if t.kind == "punct" and t.value == "{" then
        op.operation = "query"
      elseif t.kind == "name" and (t.value == "query" or t.value == "mutation"
          or t.value == "subscription") then
        next_tok()
        op.operation = t.value
        if peek().kind == "name" then op.name = name() end
        if is("(") then
          next_tok()
          repeat
            expect("$")
            local vn, vpos = name()
            expect(":")
            local ty = type_ref()
            local default
            if is("=") then
              next_tok()
              default = value(true)
            end
            no_directives()
            if op.vars[vn] then
              error({ message = 'There can be only one variable named "$' .. vn .. '".', pos = vpos }, 0)
            end
            op.vars[vn] = { name = vn, type = ty, default = default, pos = vpos }
            op.var_order[#op.var_order + 1] = vn
          until is(")")
          next_tok()
        end
        no_directives()
      elseif t.kind == "name" and t.value == "fragment" then
        error({ message = "Fragments are not supported by this simulator.", pos = t.pos }, 0)
      else
        fail(t, "Unexpected " .. describe(t) .. ".")
      end
      op.selections = selection_set()
      ops[#ops + 1] = op
    until peek().kind == "eof"
    return ops
  end
  return p
end

--- parse(text) -> { operations = {...} } | nil, error {message, locations}, syntax
function _M.parse(text)
  local line_starts
  local ok, res = pcall(function()
    local toks
    toks, line_starts = lex(text)
    return parser(toks).document()
  end)
  if ok then return { operations = res } end
  if type(res) ~= "table" then error(res, 0) end
  return nil, { message = res.message,
    locations = { location(line_starts or { 1 }, res.pos or 1) } }, res.syntax
end

---------------------------------------------------------------------------
-- types
---------------------------------------------------------------------------

local function type_string(t)
  if t.kind == "NON_NULL" then return type_string(t.of) .. "!" end
  if t.kind == "LIST" then return "[" .. type_string(t.of) .. "]" end
  return t.name
end
_M.type_string = type_string

--- "[X!]!" -> a type structure
function _M.type_of(s)
  local function rd(i)
    local t
    if sub(s, i, i) == "[" then
      local inner
      inner, i = rd(i + 1)
      t = { kind = "LIST", of = inner }
      i = i + 1 -- "]"
    else
      local _, e = find(s, "^[_%w]+", i)
      t = { kind = "NAMED", name = sub(s, i, e) }
      i = e + 1
    end
    if sub(s, i, i) == "!" then t = { kind = "NON_NULL", of = t }; i = i + 1 end
    return t, i
  end
  return (rd(1))
end

local function named(t)
  while t.kind ~= "NAMED" do t = t.of end
  return t.name
end
_M.named = named

---------------------------------------------------------------------------
-- validation (graphql-js wording)
---------------------------------------------------------------------------

local function field_def(schema, tname, fname)
  local ty = schema.types[tname]
  return ty and ty.fields and ty.fields[fname]
end

-- a literal's problem against an input type, or nil (variables are checked
-- separately)
local function literal_problem(schema, v, t)
  if v.kind == "variable" then return nil end
  if t.kind == "NON_NULL" then
    if v.kind == "null" then return 'Expected value of type "' .. type_string(t) .. '", found null.' end
    return literal_problem(schema, v, t.of)
  end
  if v.kind == "null" then return nil end
  if t.kind == "LIST" then
    if v.kind ~= "list" then return literal_problem(schema, v, t.of) end
    for _, item in ipairs(v.items) do
      local p = literal_problem(schema, item, t.of)
      if p then return p end
    end
    return nil
  end
  local def = schema.types[t.name]
  if def.kind == "INPUT" then
    if v.kind ~= "object" then
      return 'Expected value of type "' .. t.name .. '", found ' .. (v.value and tostring(v.value) or v.kind) .. "."
    end
    for _, k in ipairs(v.order) do
      if not def.fields[k] then
        return 'Field "' .. k .. '" is not defined by type "' .. t.name .. '".'
      end
    end
    for fname, f in pairs(def.fields) do
      local fv = v.fields[fname]
      if fv then
        local p = literal_problem(schema, fv, _M.type_of(f.type))
        if p then return p end
      elseif sub(f.type, -1) == "!" then
        return 'Field "' .. t.name .. "." .. fname .. '" of required type "' .. f.type
          .. '" was not provided.'
      end
    end
    return nil
  end
  if def.kind == "ENUM" then
    if v.kind ~= "enum" or not def.values[v.value] then
      return 'Value "' .. tostring(v.value) .. '" does not exist in "' .. t.name .. '" enum.'
    end
    return nil
  end
  -- scalars
  local ok = (t.name == "String" and v.kind == "string")
    or (t.name == "ID" and (v.kind == "string" or v.kind == "int"))
    or (t.name == "Int" and v.kind == "int")
    or (t.name == "Float" and (v.kind == "int" or v.kind == "float"))
    or (t.name == "Boolean" and v.kind == "boolean")
  if not ok then
    return t.name .. " cannot represent a non " .. (t.name == "ID" and "string or int"
      or t.name:lower()) .. " value."
  end
  return nil
end

-- may a variable of type vt (with a default or not) stand where t is expected
local function usable(vt, has_default, t)
  if t.kind == "NON_NULL" and vt.kind ~= "NON_NULL" then
    if not has_default then return false end
    t = t.of
  end
  if vt.kind == "NON_NULL" and t.kind ~= "NON_NULL" then vt = vt.of end
  if vt.kind ~= t.kind then return false end
  if vt.kind == "NAMED" then return vt.name == t.name end
  return usable(vt.of, false, t.of)
end

local function args_text(f)
  local out = {}
  for _, a in ipairs(f.arg_order) do
    local v = f.args[a]
    local function txt(x)
      if x.kind == "variable" then return "$" .. x.name end
      if x.kind == "list" then
        local t = {}
        for i, it in ipairs(x.items) do t[i] = txt(it) end
        return "[" .. concat(t, ",") .. "]"
      end
      if x.kind == "object" then
        local t = {}
        local keys = {}
        for _, k in ipairs(x.order) do keys[#keys + 1] = k end
        table.sort(keys)
        for _, k in ipairs(keys) do t[#t + 1] = k .. ":" .. txt(x.fields[k]) end
        return "{" .. concat(t, ",") .. "}"
      end
      if x.kind == "null" then return "null" end
      return x.kind .. ":" .. tostring(x.value)
    end
    out[#out + 1] = a .. ":" .. txt(v)
  end
  table.sort(out)
  return concat(out, ",")
end

--- validate(doc, schema, operation_name) -> op, merged root selections |
--  nil, errors (an array of {message, locations}), kind
--  ("GRAPHQL_VALIDATION_FAILED" or "OPERATION_RESOLUTION_FAILURE")
function _M.validate(doc, schema, operation_name, text)
  local line_starts = { 1 }
  if text then
    for pos in text:gmatch("()\n") do line_starts[#line_starts + 1] = pos + 1 end
  end
  local errors = {}
  local function add(msg, pos)
    errors[#errors + 1] = { message = msg, locations = pos and { location(line_starts, pos) } or nil }
  end

  local ops = doc.operations
  local names = {}
  for _, op in ipairs(ops) do
    if #ops > 1 and not op.name then
      add("This anonymous operation must be the only defined operation.", op.pos)
    elseif op.name and names[op.name] then
      add('There can be only one operation named "' .. op.name .. '".', op.pos)
    end
    if op.name then names[op.name] = true end
  end

  -- each operation is validated, as graphql-js does; then one is picked
  for _, op in ipairs(ops) do
    local opname = op.name
    local root = op.operation == "query" and schema.query or nil
    if not root then
      add("Schema is not configured to execute " .. op.operation .. " operation.", op.pos)
    end
    for _, vn in ipairs(op.var_order) do
      local v = op.vars[vn]
      local tname = named(v.type)
      local def = schema.types[tname]
      if not def then
        add('Unknown type "' .. tname .. '".', v.type.pos)
      elseif def.kind == "OBJECT" then
        add('Variable "$' .. vn .. '" cannot be non-input type "' .. type_string(v.type) .. '".',
          v.type.pos)
      elseif v.default then
        local p = literal_problem(schema, v.default, v.type)
        if p then add(p, v.default.pos) end
      end
    end
    local used = {}
    local function check_value(val, t)
      if val.kind == "variable" then
        used[val.name] = true
        local vd = op.vars[val.name]
        if not vd then
          add('Variable "$' .. val.name .. '" is not defined'
            .. (opname and (' by operation "' .. opname .. '"') or "") .. ".", val.pos)
        elseif t and schema.types[named(vd.type)] and not usable(vd.type, vd.default ~= nil, t) then
          add('Variable "$' .. val.name .. '" of type "' .. type_string(vd.type)
            .. '" used in position expecting type "' .. type_string(t) .. '".', val.pos)
        end
        return
      end
      if val.kind == "list" then
        for _, it in ipairs(val.items) do
          check_value(it, t and (t.kind == "NON_NULL" and t.of or t).of)
        end
      elseif val.kind == "object" then
        local base = t and (t.kind == "NON_NULL" and t.of or t)
        local def = base and base.kind == "NAMED" and schema.types[base.name]
        for _, k in ipairs(val.order) do
          local f = def and def.fields and def.fields[k]
          check_value(val.fields[k], f and _M.type_of(f.type) or nil)
        end
      end
    end
    local function walk(sels, tname)
      local seen = {}
      for _, f in ipairs(sels) do
        local def = f.name == "__typename" and { type = "String!", args = {} }
          or field_def(schema, tname, f.name)
        if not def then
          add('Cannot query field "' .. f.name .. '" on type "' .. tname .. '".', f.pos)
        else
          for _, a in ipairs(f.arg_order) do
            if not (def.args and def.args[a]) then
              add('Unknown argument "' .. a .. '" on field "' .. tname .. "." .. f.name .. '".',
                f.args[a].pos)
            end
          end
          for aname, adef in pairs(def.args or {}) do
            local at = _M.type_of(adef.type)
            local v = f.args[aname]
            if not v and at.kind == "NON_NULL" then
              add('Field "' .. f.name .. '" argument "' .. aname .. '" of type "' .. adef.type
                .. '" is required, but it was not provided.', f.pos)
            elseif v then
              local p = literal_problem(schema, v, at)
              if p then add(p, v.pos) end
            end
          end
          for _, a in ipairs(f.arg_order) do
            local adef = def.args and def.args[a]
            check_value(f.args[a], adef and _M.type_of(adef.type) or nil)
          end
          local ft = _M.type_of(def.type)
          local leaf = schema.types[named(ft)].kind ~= "OBJECT"
          if leaf and f.selections then
            add('Field "' .. f.name .. '" must not have a selection since type "' .. def.type
              .. '" has no subfields.', f.pos)
          elseif not leaf and not f.selections then
            add('Field "' .. f.name .. '" of type "' .. def.type
              .. '" must have a selection of subfields. Did you mean "' .. f.name .. ' { ... }"?', f.pos)
          elseif f.selections then
            walk(f.selections, named(ft))
          end
          -- fields under one response name must be the same field, same arguments
          local prev = seen[f.key]
          if prev then
            if prev.name ~= f.name then
              add('Fields "' .. f.key .. '" conflict because "' .. prev.name .. '" and "' .. f.name
                .. '" are different fields. Use different aliases on the fields to fetch both if '
                .. "this was intentional.", f.pos)
            elseif args_text(prev) ~= args_text(f) then
              add('Fields "' .. f.key .. '" conflict because they have differing arguments. Use '
                .. "different aliases on the fields to fetch both if this was intentional.", f.pos)
            end
          else
            seen[f.key] = f
          end
        end
      end
    end
    if root then walk(op.selections, root) end
    for _, vn in ipairs(op.var_order) do
      if not used[vn] then
        add('Variable "$' .. vn .. '" is never used'
          .. (opname and (' in operation "' .. opname .. '"') or "") .. ".", op.vars[vn].pos)
      end
    end
  end
  if #errors > 0 then return nil, errors, "GRAPHQL_VALIDATION_FAILED" end

  local op
  if operation_name ~= nil then
    for _, o in ipairs(ops) do
      if o.name == operation_name then op = o end
    end
    if not op then
      return nil, { { message = 'Unknown operation named "' .. tostring(operation_name) .. '".' } },
        "OPERATION_RESOLUTION_FAILURE"
    end
  elseif #ops > 1 then
    return nil, { { message = "Must provide operation name if query contains multiple operations." } },
      "OPERATION_RESOLUTION_FAILURE"
  else
    op = ops[1]
  end
  -- the root fields, one per response name (repeats merged), in order
  local merged, by_key = {}, {}
  for _, f in ipairs(op.selections) do
    local prev = by_key[f.key]
    if prev then
      if f.selections then
        for _, s in ipairs(f.selections) do prev.selections[#prev.selections + 1] = s end
      end
    else
      local copy = {}
      for k, v in pairs(f) do copy[k] = v end
      if f.selections then
        copy.selections = {}
        for i, s in ipairs(f.selections) do copy.selections[i] = s end
      end
      by_key[f.key] = copy
      merged[#merged + 1] = copy
    end
  end
  return op, merged
end

---------------------------------------------------------------------------
-- variables and arguments
---------------------------------------------------------------------------

local function coerce_value(schema, v, t, null, path)
  if t.kind == "NON_NULL" then
    if v == nil or v == null then
      return nil, 'Expected non-nullable type "' .. type_string(t) .. '" not to be null.', path
    end
    return coerce_value(schema, v, t.of, null, path)
  end
  if v == nil or v == null then return null end
  if t.kind == "LIST" then
    if type(v) ~= "table" or (next(v) ~= nil and v[1] == nil) then
      local one, e, at = coerce_value(schema, v, t.of, null, path)
      if e then return nil, e, at end
      return { one }
    end
    local out = {}
    for i, item in ipairs(v) do
      local c, e, at = coerce_value(schema, item, t.of, null, path .. "[" .. (i - 1) .. "]")
      if e then return nil, e, at end
      out[i] = c
    end
    return out
  end
  local def = schema.types[t.name]
  if def.kind == "INPUT" then
    if type(v) ~= "table" or (v[1] ~= nil) then
      return nil, 'Expected type "' .. t.name .. '" to be an object.', path
    end
    for k in pairs(v) do
      if not def.fields[k] then
        return nil, 'Field "' .. tostring(k) .. '" is not defined by type "' .. t.name .. '".', path
      end
    end
    local out = {}
    for fname, f in pairs(def.fields) do
      local c, e, at = coerce_value(schema, v[fname], _M.type_of(f.type), null, path .. "." .. fname)
      if e then return nil, e, at end
      if v[fname] ~= nil then out[fname] = c end
    end
    return out
  end
  if def.kind == "ENUM" then
    if type(v) ~= "string" or not def.values[v] then
      return nil, 'Value does not exist in "' .. t.name .. '" enum.', path
    end
    return v
  end
  if t.name == "String" and type(v) == "string" then return v end
  if t.name == "ID" and (type(v) == "string" or (type(v) == "number" and v % 1 == 0)) then
    return type(v) == "number" and format("%d", v) or v
  end
  if t.name == "Int" and type(v) == "number" and v % 1 == 0 then return v end
  if t.name == "Float" and type(v) == "number" then return v end
  if t.name == "Boolean" and type(v) == "boolean" then return v end
  return nil, t.name .. " cannot represent a non " .. (t.name == "ID" and "string or int"
    or t.name:lower()) .. " value.", path
end

--- coerce_variables(schema, op, variables, null) -> values | nil, errors
-- (graphql-js: 'Variable "$input" got invalid value <value> at "input.vm";
-- <problem>', with the value itself left out here)
function _M.coerce_variables(schema, op, variables, null)
  local out, errors = {}, {}
  variables = type(variables) == "table" and variables or {}
  for _, vn in ipairs(op.var_order) do
    local vd = op.vars[vn]
    local given = variables[vn]
    if given == nil and vd.default then
      out[vn] = _M.literal(vd.default, nil, null)
    elseif given == nil and vd.type.kind == "NON_NULL" then
      errors[#errors + 1] = { message = 'Variable "$' .. vn .. '" of required type "'
        .. type_string(vd.type) .. '" was not provided.' }
    elseif given == null and vd.type.kind == "NON_NULL" then
      errors[#errors + 1] = { message = 'Variable "$' .. vn .. '" of non-null type "'
        .. type_string(vd.type) .. '" must not be null.' }
    elseif given ~= nil then
      local c, e, at = coerce_value(schema, given, vd.type, null, vn)
      if e then
        errors[#errors + 1] = { message = 'Variable "$' .. vn .. '" got invalid value'
          .. (at ~= vn and (' at "' .. at .. '"') or "") .. "; " .. e }
      else
        out[vn] = c
      end
    end
  end
  if #errors > 0 then return nil, errors end
  return out
end

--- the Lua value of a literal (variables looked up in vars)
function _M.literal(v, vars, null)
  if v.kind == "variable" then
    local x = vars and vars[v.name]
    if x == nil then return null end
    return x
  end
  if v.kind == "null" then return null end
  if v.kind == "int" or v.kind == "float" then return tonumber(v.value) end
  if v.kind == "list" then
    local out = {}
    for i, it in ipairs(v.items) do out[i] = _M.literal(it, vars, null) end
    return out
  end
  if v.kind == "object" then
    local out = {}
    for k, fv in pairs(v.fields) do out[k] = _M.literal(fv, vars, null) end
    return out
  end
  return v.value
end

return _M
